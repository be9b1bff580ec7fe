"""Where receipt bytes go: python-escpos printer classes behind one small interface.

A transport opens a fresh python-escpos device for every job and closes it after,
so a printer that was unplugged and plugged back in simply works on the next
receipt. Every transport has short timeouts: a dead printer costs seconds, never
the next customer. ``read_status(esc, n)`` sends ``DLE EOT n`` and returns the first
answer byte, or None when the printer does not answer (which means *unknown*).
"""

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from escpos.escpos import Escpos

from kiosk.hardware.printer.status import QUERY


class Transport:
    kind = "?"
    target = "?"

    def probe(self):
        """A status found without talking to the printer, or None to ask it."""
        return None

    def open(self) -> Escpos:
        raise NotImplementedError

    def read_status(self, esc: Escpos, n: int) -> int | None:
        esc._raw(QUERY[n])
        try:
            answer = esc._read()
        except NotImplementedError:
            return None
        return answer[0] if answer else None

    def close(self, esc: Escpos) -> None:
        try:
            esc.close()
        except Exception:  # closing a broken connection must not hide the real fault
            pass

    def __str__(self) -> str:
        return f"{self.kind} printer {self.target}"


class UsbTransport(Transport):
    kind = "USB"

    def __init__(self, vendor: int, product: int, timeout_s: float, profile: str):
        self.vendor, self.product = vendor, product
        self.timeout_ms, self.profile = int(timeout_s * 1000), profile
        self.target = f"{vendor:04x}:{product:04x}"

    def open(self) -> Escpos:
        from escpos.printer import Usb  # lazy: needs pyusb/libusb

        esc = Usb(self.vendor, self.product, timeout=self.timeout_ms, profile=self.profile)
        esc.open()
        return esc

    def read_status(self, esc, n: int) -> int | None:
        import usb.core

        esc._raw(QUERY[n])
        try:
            answer = esc.device.read(esc.in_ep, 16, min(self.timeout_ms, 1000))
        except usb.core.USBTimeoutError:
            return None
        return answer[0] if len(answer) else None


class SerialTransport(Transport):
    kind = "serial"

    def __init__(self, devfile: str, baudrate: int, timeout_s: float, profile: str):
        self.devfile, self.baudrate, self.timeout_s, self.profile = devfile, baudrate, timeout_s, profile
        self.target = f"{devfile} at {baudrate} baud"

    def open(self) -> Escpos:
        from escpos.printer import Serial  # lazy: needs pyserial

        esc = Serial(self.devfile, baudrate=self.baudrate, timeout=min(self.timeout_s, 1.0),
                     profile=self.profile)
        esc.open()
        esc.device.write_timeout = self.timeout_s  # python-escpos sets none: never hang
        return esc

    def read_status(self, esc, n: int) -> int | None:
        esc._raw(QUERY[n])
        answer = esc.device.read(1)
        return answer[0] if answer else None


class NetworkTransport(Transport):
    kind = "network"

    def __init__(self, host: str, port: int, timeout_s: float, profile: str,
                 status_timeout_s: float = 1.0):
        self.host, self.port, self.timeout_s, self.profile = host, port, timeout_s, profile
        self.status_timeout_s = min(status_timeout_s, timeout_s)
        self.target = f"{host}:{port}"

    def open(self) -> Escpos:
        from escpos.printer import Network

        esc = Network(self.host, self.port, timeout=self.timeout_s, profile=self.profile)
        esc.open()
        return esc

    def read_status(self, esc, n: int) -> int | None:
        sock = esc.device
        sock.sendall(QUERY[n])
        sock.settimeout(self.status_timeout_s)
        try:
            answer = sock.recv(16)
        except TimeoutError:
            return None
        finally:
            sock.settimeout(self.timeout_s)
        if not answer:
            raise ConnectionResetError(f"{self.target} closed the connection")
        return answer[0]


class FileTransport(Transport):
    kind = "device file"

    def __init__(self, path: str, profile: str):
        self.path, self.profile, self.target = path, profile, path

    def open(self) -> Escpos:
        from escpos.printer import File

        esc = File(self.path, profile=self.profile)
        esc.open()
        return esc

    def read_status(self, esc, n: int) -> int | None:
        return None  # a write-only device file has no way back

    def probe(self):
        """Status without opening (opening a regular file for writing would empty it)."""
        from kiosk.hardware.printer import faults, status

        path = Path(self.path)
        if not path.exists():
            return status.PrinterStatus("unplugged", f"{faults.MESSAGES['unplugged']} ({self})")
        if not os.access(path, os.W_OK):
            return status.PrinterStatus("permission", f"{faults.MESSAGES['permission']} ({self})")
        return status.UNKNOWN


class DummyTransport(Transport):
    """python-escpos ``Dummy`` (or a subclass given as ``device``): keeps every job."""

    kind = "dummy"
    target = "dummy://"

    def __init__(self, profile: str, device: Escpos | None = None):
        from escpos.printer import Dummy

        self.device = device if device is not None else Dummy(profile=profile)
        self.jobs: list[bytes] = []

    def open(self) -> Escpos:
        self.device.open()
        return self.device

    def sent(self, data: bytes) -> None:
        self.jobs.append(data)


def parse_url(url: str, timeout_s: float, profile: str) -> Transport | None:
    """The transport for a printer URL (None for ``preview://``/``none``, handled above)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "usb":
        vid, _, pid = (parts.netloc or parts.path.lstrip("/")).partition(":")
        try:
            return UsbTransport(int(vid, 16), int(pid, 16), timeout_s, profile)
        except ValueError:
            raise ValueError(f"USB printer URL must be usb://VID:PID in hex, e.g. usb://04b8:0e15, not {url!r}") from None
    if scheme == "serial":
        query = parse_qs(parts.query)
        baud = query.get("baudrate", ["19200"])[0]
        if not baud.isdigit() or not parts.path:
            raise ValueError(f"serial printer URL must be serial:///dev/ttyUSB0?baudrate=19200, not {url!r}")
        return SerialTransport(parts.path, int(baud), timeout_s, profile)
    if scheme == "tcp":
        if not parts.hostname:
            raise ValueError(f"network printer URL must be tcp://HOST:PORT, not {url!r}")
        return NetworkTransport(parts.hostname, parts.port or 9100, timeout_s, profile)
    if scheme == "file":
        if not parts.path:
            raise ValueError(f"device file URL must be file:///dev/usb/lp0, not {url!r}")
        return FileTransport(parts.path, profile)
    if scheme == "dummy":
        return DummyTransport(profile)
    raise ValueError(f"unknown printer URL {url!r}: use usb://VID:PID, serial:///dev/ttyUSB0?baudrate=19200, "
                     "tcp://HOST:9100, file:///dev/usb/lp0, preview://DIR, dummy:// or none")
