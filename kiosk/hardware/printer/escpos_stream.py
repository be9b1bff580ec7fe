"""Reading an ESC/POS byte stream back: text runs with their code page, raster images.

The fake network printer uses this to show what it was sent, and the tests use it as
an oracle independent of the renderer: they take the ``GS v 0`` images out of the
bytes python-escpos produced and decode the QR code in them. Only the commands a
receipt uses are understood; anything else raises ``ValueError`` so a surprise in the
stream is noticed, not skipped.
"""

from dataclasses import dataclass, field

import numpy as np

ESC, GS, DLE = 0x1B, 0x1D, 0x10

# ESC x: number of parameter bytes that follow.
_ESC_ARGS = {0x40: 0, 0x74: 1, 0x21: 1, 0x45: 1, 0x2D: 1, 0x61: 1, 0x4D: 1, 0x47: 1,
             0x7B: 1, 0x64: 1, 0x4A: 1, 0x32: 0, 0x33: 1, 0x20: 1, 0x56: 1, 0x70: 3}
_GS_ARGS = {0x21: 1, 0x42: 1, 0x62: 1, 0x48: 1, 0x66: 1, 0x68: 1, 0x77: 1}


@dataclass
class Text:
    data: bytes
    codepage: int | None  # the ESC t slot in force, None if never set

    def decode(self, encodings: dict[int, str]) -> str:
        """Decode with a slot -> Python codec map (e.g. ``{0: "cp437", 17: "cp866"}``)."""
        codec = encodings.get(self.codepage if self.codepage is not None else 0, "cp437")
        return self.data.decode(codec, errors="replace")


@dataclass
class Raster:
    width: int
    height: int
    bits: np.ndarray  # uint8 HxW, 1 = a black dot

    def to_gray(self) -> np.ndarray:
        """The image as 8-bit grayscale, black on white, with a quiet zone around it."""
        gray = np.where(self.bits == 1, 0, 255).astype(np.uint8)
        return np.pad(gray, 16, constant_values=255)


@dataclass
class Stream:
    items: list = field(default_factory=list)
    cuts: int = 0
    status_queries: list[int] = field(default_factory=list)

    @property
    def rasters(self) -> list[Raster]:
        return [i for i in self.items if isinstance(i, Raster)]

    @property
    def texts(self) -> list[Text]:
        return [i for i in self.items if isinstance(i, Text)]


def parse(data: bytes) -> Stream:
    """Split ``data`` into text runs, raster images, cuts and status queries."""
    out, page, i, run = Stream(), None, 0, bytearray()

    def flush():
        if run:
            out.items.append(Text(bytes(run), page))
            run.clear()

    while i < len(data):
        b = data[i]
        if b == ESC:
            flush()
            cmd = data[i + 1]
            if cmd not in _ESC_ARGS:
                raise ValueError(f"unknown command ESC 0x{cmd:02x} at byte {i}")
            if cmd == 0x74:
                page = data[i + 2]
            i += 2 + _ESC_ARGS[cmd]
        elif b == GS:
            flush()
            i = _gs(data, i, out)
        elif b == DLE and data[i + 1] == 0x04:
            flush()
            out.status_queries.append(data[i + 2])
            i += 3
        else:
            run.append(b)
            i += 1
    flush()
    return out


def _gs(data: bytes, i: int, out: Stream) -> int:
    cmd = data[i + 1]
    if cmd == 0x76 and data[i + 2] == 0x30:  # GS v 0 m xL xH yL yH d1...dk
        width_bytes = data[i + 4] | data[i + 5] << 8
        height = data[i + 6] | data[i + 7] << 8
        start = i + 8
        size = width_bytes * height
        if start + size > len(data):
            raise ValueError(f"raster image at byte {i} is truncated")
        packed = np.frombuffer(data, np.uint8, size, start).reshape(height, width_bytes)
        out.items.append(Raster(width_bytes * 8, height, np.unpackbits(packed, axis=1)))
        return start + size
    if cmd == 0x56:  # GS V m [n]
        out.cuts += 1
        return i + (4 if data[i + 2] in (65, 66) else 3)
    if cmd == 0x28:  # GS ( k / GS ( L pL pH ...
        length = data[i + 3] | data[i + 4] << 8
        return i + 5 + length
    if cmd in _GS_ARGS:
        return i + 2 + _GS_ARGS[cmd]
    raise ValueError(f"unknown command GS 0x{cmd:02x} at byte {i}")
