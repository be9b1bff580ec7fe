"""Where receipt bytes go: python-escpos printer classes behind one small interface.

A transport opens a fresh python-escpos device for every job and closes it after,
so a printer that was unplugged and plugged back in simply works on the next
receipt. Every transport has short timeouts: a dead printer costs seconds, never
the next customer. ``read_status(esc, n)`` sends ``DLE EOT n`` and returns the first
answer byte, or None when the printer does not answer (which means *unknown*).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from kiosk.hardware.escpos_setup import load
from kiosk.hardware.printer.status import QUERY
from kiosk.i18n import Msg

if TYPE_CHECKING:  # python-escpos itself is imported when a printer is first opened
    from escpos.escpos import Escpos


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
        # python-escpos on first use; needs pyusb/libusb
        esc = load().Usb(self.vendor, self.product, timeout=self.timeout_ms, profile=self.profile)
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


# -- [printer] url = "auto": find the USB receipt printer ------------------------------
PRINTER_CLASS = 7  # USB class "printer" (device or interface)
# Receipt-printer makers whose devices do not always say class 7 (vendor-specific
# interfaces): any product of theirs; plus well-known POS-58/80 clone ids (vid, pid).
KNOWN_VENDORS = {0x04B8: "Epson", 0x0519: "Star Micronics", 0x1504: "Bixolon",
                 0x1D90: "Citizen", 0x2730: "Citizen", 0x154F: "SNBC", 0x0DD4: "Custom"}
KNOWN_CLONES = {(0x0416, 0x5011): "POS-58 (Winbond)", (0x0FE6, 0x811E): "POS-58 (ICS)",
                (0x28E9, 0x0289): "POS-80 (GD32)"}


def list_usb_devices() -> list:
    """Every USB device pyusb sees (the one place discovery touches hardware)."""
    import usb.core

    return list(usb.core.find(find_all=True))


def _interface_classes(dev) -> set[int]:
    classes = set()
    try:
        for cfg in dev:
            for intf in cfg:
                classes.add(intf.bInterfaceClass)
    except Exception:  # a device we may not read (permissions): judged by vendor only
        pass
    return classes


def _product(dev) -> str:
    try:
        return (dev.product or "").strip()
    except Exception:  # reading a string descriptor needs access to the device
        return ""


def find_usb_printers(devices=None) -> list[dict]:
    """USB receipt printers, best first: class 7 devices, then known makers' ids.

    Each is ``{"vendor", "product", "why", "name"}``. ``devices`` are pyusb devices (or
    anything with ``idVendor``, ``idProduct``, ``bDeviceClass`` and configurations of
    interfaces); by default :func:`list_usb_devices`.
    """
    found = []
    for dev in list_usb_devices() if devices is None else devices:
        vid, pid = dev.idVendor, dev.idProduct
        if dev.bDeviceClass == PRINTER_CLASS or PRINTER_CLASS in _interface_classes(dev):
            why, rank = "USB class 7, printer", 0
        elif (vid, pid) in KNOWN_CLONES:
            why, rank = f"known printer id, {KNOWN_CLONES[(vid, pid)]}", 1
        elif vid in KNOWN_VENDORS:
            why, rank = f"receipt printer maker {KNOWN_VENDORS[vid]}", 2
        else:
            continue
        found.append((rank, vid, pid, {"vendor": vid, "product": pid, "why": why,
                                       "name": _product(dev)}))
    return [item for *_, item in sorted(found, key=lambda f: f[:3])]


def describe_usb(found: dict) -> str:
    name = f" {found['name']!r}" if found.get("name") else ""
    return f"usb://{found['vendor']:04x}:{found['product']:04x}{name} ({found['why']})"


class AutoUsbTransport(Transport):
    """``auto``: the first USB receipt printer found, looked up again for every job, so
    a printer plugged in (or swapped) after start is used without a restart."""

    kind = "USB printer (auto)"

    def __init__(self, timeout_s: float, profile: str):
        self.timeout_s, self.profile = timeout_s, profile
        self.chosen: dict | None = None
        self._usb: UsbTransport | None = None

    @property
    def target(self) -> str:
        return describe_usb(self.chosen) if self.chosen else "none found yet"

    def pick(self) -> UsbTransport | None:
        """Look for the printer now; remembers (and returns) what was chosen."""
        from kiosk.hardware.printer import faults

        try:
            found = find_usb_printers()
        except Exception as exc:  # no libusb, no USB access: say so, never crash
            raise faults.fault("unplugged", "USB printer auto", f"cannot list USB devices ({exc})") from exc
        self.chosen = found[0] if found else None
        self._usb = (UsbTransport(self.chosen["vendor"], self.chosen["product"], self.timeout_s,
                                  self.profile) if self.chosen else None)
        return self._usb

    def probe(self):
        from kiosk.hardware.printer import faults, status

        try:
            usb = self.pick()
        except Exception as exc:
            return status.PrinterStatus("unplugged", str(exc))
        if usb is None:
            return status.PrinterStatus("unplugged", "no USB receipt printer found (auto: "
                                        "looked for USB class 7 and known printer makers); "
                                        f"{faults.MESSAGES['unplugged']}")
        return None  # found one: ask it

    def open(self) -> Escpos:
        from kiosk.hardware.printer import faults

        usb = self._usb if self._usb is not None else self.pick()
        if usb is None:
            raise faults.fault("unplugged", "USB printer auto", "no USB receipt printer found")
        try:
            return usb.open()
        finally:
            self._usb = None  # look again next time (unplugged, swapped)

    def read_status(self, esc, n: int) -> int | None:
        return UsbTransport.read_status(self, esc, n)

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout_s * 1000)


class SerialTransport(Transport):
    kind = "serial"

    def __init__(self, devfile: str, baudrate: int, timeout_s: float, profile: str):
        self.devfile, self.baudrate, self.timeout_s, self.profile = devfile, baudrate, timeout_s, profile
        self.target = f"{devfile} at {baudrate} baud"

    def open(self) -> Escpos:
        # python-escpos on first use; needs pyserial
        esc = load().Serial(self.devfile, baudrate=self.baudrate, timeout=min(self.timeout_s, 1.0),
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
        esc = load().Network(self.host, self.port, timeout=self.timeout_s, profile=self.profile)
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
        esc = load().File(self.path, profile=self.profile)
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
        self.device = device if device is not None else load().Dummy(profile=profile)
        self.jobs: list[bytes] = []

    def open(self) -> Escpos:
        self.device.open()
        return self.device

    def sent(self, data: bytes) -> None:
        self.jobs.append(data)


def parse_url(url: str, timeout_s: float, profile: str) -> Transport | None:
    """The transport for a printer URL (None for ``preview://``/``none``, handled above)."""
    if url.strip().lower() in ("auto", "auto://", "usb://auto"):
        return AutoUsbTransport(timeout_s, profile)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "usb":
        vid, _, pid = (parts.netloc or parts.path.lstrip("/")).partition(":")
        try:
            return UsbTransport(int(vid, 16), int(pid, 16), timeout_s, profile)
        except ValueError:
            raise ValueError(Msg("USB printer URL must be usb://VID:PID in hex, e.g. usb://04b8:0e15, not {url}",
                                 url=repr(url))) from None
    if scheme == "serial":
        query = parse_qs(parts.query)
        baud = query.get("baudrate", ["19200"])[0]
        if not baud.isdigit() or not parts.path:
            raise ValueError(Msg("serial printer URL must be serial:///dev/ttyUSB0?baudrate=19200, not {url}",
                                 url=repr(url)))
        return SerialTransport(parts.path, int(baud), timeout_s, profile)
    if scheme == "tcp":
        if not parts.hostname:
            raise ValueError(Msg("network printer URL must be tcp://HOST:PORT, not {url}", url=repr(url)))
        return NetworkTransport(parts.hostname, parts.port or 9100, timeout_s, profile)
    if scheme == "file":
        if not parts.path:
            raise ValueError(Msg("device file URL must be file:///dev/usb/lp0, not {url}", url=repr(url)))
        return FileTransport(parts.path, profile)
    if scheme == "dummy":
        return DummyTransport(profile)
    raise ValueError(Msg("unknown printer URL {url}: use auto, usb://VID:PID, serial:///dev/ttyUSB0?baudrate=19200, "
                         "tcp://HOST:9100, file:///dev/usb/lp0, preview://DIR, dummy:// or none", url=repr(url)))
