"""QR decoding of grayscale frames: zxing-cpp, pyzbar, and a fallback chain.

Decoding is QR-only (DESIGN.md s4): 1D barcodes and camera noise must never become
phantom codes. Both backends read light-on-dark (dark mode) codes: zxing-cpp with
``try_invert``, pyzbar by decoding the inverted image when the plain one has nothing.

``make_decoder("auto")`` is the chain chosen from the measurements in
docs/scanning.md: zxing-cpp (local-average binarizer), then zxing-cpp with its
global-histogram binarizer, then pyzbar (at half size for frames over 480 px, and
on the inverted image too). Each stage runs only when the earlier ones
found nothing. Payload text: zxing-cpp's plain text (it applies the code's ECI or
guesses the character set); pyzbar's bytes as UTF-8, or latin-1 when not UTF-8.
"""

from dataclasses import dataclass

import numpy as np

from kiosk.errors import ConfigError, HardwareError

NAMES = ("auto", "zxing", "zxing-global", "pyzbar", "pyzbar-fast")
AUTO_CHAIN = ("zxing", "zxing-global", "pyzbar-fast")
FAST_MAX_SIDE = 480


@dataclass(frozen=True)
class Decoded:
    """One QR code found in a frame: its text and the backend that read it."""

    text: str
    decoder: str


def bytes_to_text(data: bytes) -> str:
    """UTF-8 when the bytes are UTF-8, else latin-1 (every byte kept as one char)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _unique(found: list[Decoded]) -> list[Decoded]:
    seen, result = set(), []
    for item in found:
        if item.text not in seen:
            seen.add(item.text)
            result.append(item)
    return result


class Decoder:
    """Finds QR codes in a 2-D uint8 grayscale image."""

    name = "decoder"

    def decode(self, gray: np.ndarray) -> list[Decoded]:
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class ZxingDecoder(Decoder):
    """zxing-cpp restricted to QR symbols; tries inverted codes too."""

    def __init__(self, binarizer: str = "local"):
        try:
            import zxingcpp
        except ImportError as exc:
            raise HardwareError(f"zxing-cpp is not installed ({exc}): pip install zxing-cpp") from None
        self._zx = zxingcpp
        self.name = "zxing" if binarizer == "local" else "zxing-global"
        self._options = {"formats": zxingcpp.BarcodeFormat.QRCode, "try_invert": True}
        if hasattr(zxingcpp, "TextMode"):
            self._options["text_mode"] = zxingcpp.TextMode.Plain
        if binarizer != "local":
            self._options["binarizer"] = zxingcpp.Binarizer.GlobalHistogram

    def decode(self, gray):
        found = self._zx.read_barcodes(gray, **self._options)
        return _unique([Decoded(b.text, self.name) for b in found if b.valid])


def half_size(gray: np.ndarray) -> np.ndarray:
    """The image at half width and height (2x2 box average), for a cheaper decode."""
    h, w = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
    g = gray[:h, :w].astype(np.uint16)
    return ((g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2] + 2) >> 2).astype(np.uint8)


class PyzbarDecoder(Decoder):
    """pyzbar (libzbar) restricted to QR symbols; ``invert`` retries on the negative.

    ``max_side``: frames larger than this are decoded at half size. zbar's cost grows
    fast with area and sensor noise (about 10-40 ms for a code-less 640x480 frame
    here, 2 ms at 320x240), and a phone's code under the kiosk camera is large.
    """

    def __init__(self, invert: bool = True, max_side: int | None = None):
        try:
            from pyzbar import pyzbar
        except ImportError as exc:
            raise HardwareError(f"pyzbar cannot load libzbar ({exc}): on Debian/Raspberry Pi OS "
                                "run 'sudo apt install libzbar0'") from None
        self._decode = pyzbar.decode
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]
        self.invert, self.max_side = invert, max_side
        self.name = "pyzbar-fast" if max_side else "pyzbar"

    def _read(self, gray):
        results = self._decode(gray, symbols=self._symbols)
        return [Decoded(bytes_to_text(r.data), self.name) for r in results]

    def decode(self, gray):
        if self.max_side and max(gray.shape) > self.max_side:
            gray = half_size(gray)
        found = self._read(gray)
        if not found and self.invert:
            found = self._read(np.invert(gray))
        return _unique(found)


class ChainDecoder(Decoder):
    """Runs decoders in order and returns the first non-empty result.

    ``decode(gray, stop=callable)``: before each fallback stage ``stop()`` is asked
    whether to give up on this frame; the scanner passes "a newer frame is waiting",
    so on a busy CPU the slow fallbacks never delay the fast first pass on the
    newest frame (on a frame with a code the first pass nearly always succeeds).
    """

    accepts_stop = True

    def __init__(self, decoders: list[Decoder], name: str = "auto"):
        if not decoders:
            raise HardwareError("no QR decoder is available (install zxing-cpp or libzbar0)")
        self.decoders, self.name = decoders, name

    def decode(self, gray, stop=None):
        for i, decoder in enumerate(self.decoders):
            if i and stop is not None and stop():
                return []
            found = decoder.decode(gray)
            if found:
                return found
        return []


def _backend(name: str) -> Decoder:
    if name == "zxing":
        return ZxingDecoder("local")
    if name == "zxing-global":
        return ZxingDecoder("global")
    if name == "pyzbar":
        return PyzbarDecoder(invert=True)
    if name == "pyzbar-fast":  # the last stage of auto: half size above 480 px
        return PyzbarDecoder(invert=True, max_side=FAST_MAX_SIDE)
    raise ConfigError(f"unknown decoder {name!r}: use one of {', '.join(NAMES)} "
                      "or a comma-separated chain such as 'zxing,pyzbar'")


def make_decoder(name: str = "auto") -> Decoder:
    """The decoder called ``name``: ``auto``, one backend, or ``a,b,...`` as a chain.

    In ``auto`` a backend whose library is missing is left out (the others still
    work); naming a missing backend explicitly is a :class:`HardwareError`.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        decoders = []
        for part in AUTO_CHAIN:
            try:
                decoders.append(_backend(part))
            except HardwareError:
                continue
        return ChainDecoder(decoders, "auto")
    parts = [p.strip() for p in name.split(",") if p.strip()]
    if len(parts) == 1:
        return _backend(parts[0])
    return ChainDecoder([_backend(p) for p in parts], ",".join(parts))
