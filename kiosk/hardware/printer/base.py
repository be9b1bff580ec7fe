"""The one interface every receipt printer has, and the ``none`` printer."""

from kiosk.core.receipt import Receipt
from kiosk.errors import PrinterError
from kiosk.hardware.printer.faults import STATES
from kiosk.hardware.printer.status import PrinterStatus


class ReceiptPrinter:
    """Prints receipts. ``print_receipt`` raises :class:`PrinterError` on any fault.

    Not thread-safe on its own: :class:`kiosk.printing.PrintService` serialises jobs.
    """

    url = "none"
    available = True

    def print_receipt(self, receipt: Receipt) -> str | None:
        """Print ``receipt``; may return where it went (a PNG path for previews)."""
        raise NotImplementedError

    def status(self) -> PrinterStatus:
        """Ask the printer how it is (quickly; never raises for printer faults)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class NoPrinter(ReceiptPrinter):
    """``none``: the kiosk has no printer; nothing is printed or queued."""

    available = False

    def print_receipt(self, receipt: Receipt) -> str | None:
        raise PrinterError("none", STATES["none"])

    def status(self) -> PrinterStatus:
        return PrinterStatus("none", STATES["none"] + ' ([printer] url = "none")')
