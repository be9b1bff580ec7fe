"""What a printer's real-time status bytes (``DLE EOT n``) say.

Epson-style status bytes have bit 1 and bit 4 set and bits 0 and 7 clear; anything
else (or no answer at all) is *unknown*, never "paper out". python-escpos'
``paper_status()`` reports 0 ("no paper") for some of those cases, so the kiosk reads
the bytes itself:

* ``DLE EOT 1`` printer status: bit 3 = offline.
* ``DLE EOT 2`` offline cause: bit 2 = cover open, bit 5 = stopped at paper end,
  bit 6 = error.
* ``DLE EOT 4`` roll paper sensor: bits 5-6 = paper end, bits 2-3 = near end.
"""

from collections.abc import Callable
from dataclasses import dataclass

from kiosk.hardware.printer import faults

QUERY = {1: b"\x10\x04\x01", 2: b"\x10\x04\x02", 4: b"\x10\x04\x04"}


@dataclass(frozen=True)
class PrinterStatus:
    """``state`` is ``ok``, ``paper_low``, ``unknown``, ``none`` or a fault word."""

    state: str
    message: str  # may be a kiosk.i18n.Msg: said in the reader's language by faults.translate

    @property
    def fault(self) -> str | None:
        return None if self.state in ("ok", "paper_low", "unknown", "none") else self.state


OK = PrinterStatus("ok", faults.STATES["ok"])
UNKNOWN = PrinterStatus("unknown", faults.STATES["unknown"])


def valid(byte: int | None) -> bool:
    return byte is not None and (byte & 0x93) == 0x12


def _fault(kind: str) -> PrinterStatus:
    return PrinterStatus(kind, faults.MESSAGES[kind])


def interpret(ask: Callable[[int], int | None]) -> PrinterStatus:
    """Query status with ``ask(n) -> first answer byte or None`` and judge it."""
    printer = ask(1)
    if not valid(printer):
        return UNKNOWN  # no (sensible) answer: don't ask twice, don't guess
    paper = ask(4)
    if valid(paper) and paper & 0x60:
        return _fault("paper_out")
    if printer & 0x08:  # offline: find out why
        cause = ask(2)
        if valid(cause) and cause & 0x04:
            return _fault("cover_open")
        if valid(cause) and cause & 0x20:
            return _fault("paper_out")
        return _fault("offline")
    if valid(paper) and paper & 0x0C:
        return PrinterStatus("paper_low", faults.STATES["paper_low"])
    return OK
