"""A thermal receipt printer speaking ESC/POS through any transport.

One job: render the whole receipt to bytes first, open the transport, ask the
printer's status (paper, cover, offline), then send the job in one write and close.
Every failure becomes one :class:`~kiosk.errors.PrinterError` with a fault word.
"""

from kiosk.core.receipt import Receipt
from kiosk.hardware.printer import faults, render
from kiosk.hardware.printer import status as st
from kiosk.hardware.printer.base import ReceiptPrinter
from kiosk.hardware.printer.transports import DummyTransport, Transport


class EscposPrinter(ReceiptPrinter):
    def __init__(self, url: str, transport: Transport, layout: render.Layout):
        self.url, self.transport, self.layout = url, transport, layout

    def render(self, receipt: Receipt) -> bytes:
        return render.render(receipt, self.layout)

    def print_receipt(self, receipt: Receipt) -> str | None:
        data = self.render(receipt)
        esc = self._open()
        try:
            state = self._query(esc)
            if state.fault:
                raise faults.fault(state.fault, str(self.transport))
            try:
                esc._raw(data)
            except Exception as exc:
                err = faults.classify(exc, str(self.transport))
                err.partial = True  # part of the receipt may be on paper already
                raise err from exc
            if isinstance(self.transport, DummyTransport):
                self.transport.sent(data)
        finally:
            self.transport.close(esc)
        return None

    def status(self) -> st.PrinterStatus:
        probed = self.transport.probe()
        if probed is not None:
            return probed
        try:
            esc = self._open()
        except Exception as exc:
            err = faults.classify(exc, str(self.transport))
            return st.PrinterStatus(err.fault, str(err))
        try:
            return self._query(esc)
        except Exception as exc:
            err = faults.classify(exc, str(self.transport))
            return st.PrinterStatus(err.fault, str(err))
        finally:
            self.transport.close(esc)

    def _open(self):
        try:
            return self.transport.open()
        except Exception as exc:
            raise faults.classify(exc, str(self.transport)) from exc

    def _query(self, esc) -> st.PrinterStatus:
        try:
            return st.interpret(lambda n: self.transport.read_status(esc, n))
        except Exception as exc:
            raise faults.classify(exc, str(self.transport)) from exc

    @property
    def jobs(self) -> list[bytes]:
        """Jobs a ``dummy://`` printer received (empty for real transports)."""
        return getattr(self.transport, "jobs", [])
