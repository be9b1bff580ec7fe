"""Receipt printers behind one factory, like gpiozero's pin factories.

``open_printer(url)`` picks the back end from a URL:

=====================================  ==============================================
``auto``                               the USB receipt printer found (class 7 or a
                                       known maker), looked up for every job
``usb://VID:PID``                      USB thermal printer (python-escpos ``Usb``)
``serial:///dev/ttyUSB0?baudrate=N``   serial printer (``Serial``)
``tcp://HOST:9100``                    network printer (``Network``)
``file:///dev/usb/lp0``                kernel printer device file (``File``)
``preview://DIR``                      a PNG per receipt in DIR (demo, docs)
``dummy://``                           python-escpos ``Dummy``, keeps the bytes (tests)
``none``                               no printer
=====================================  ==============================================

Nothing here touches hardware until a receipt is printed, and neither importing this
package nor ``open_printer`` imports python-escpos (with pyusb, pyserial and
python-barcode): that happens on the first receipt or status query, through
:func:`kiosk.hardware.escpos_setup.load`, which prepares it first (its printer
database cached once, the logging left alone).
"""

from pathlib import Path
from urllib.parse import urlsplit

from kiosk.hardware.printer.base import NoPrinter, ReceiptPrinter
from kiosk.hardware.printer.render import Layout
from kiosk.hardware.printer.status import PrinterStatus

DEFAULT_TIMEOUT_S = 3.0

__all__ = ["Layout", "NoPrinter", "PrinterStatus", "ReceiptPrinter", "open_printer"]


def open_printer(url: str, *, paper_mm: int = 80, profile: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, text: str = "auto") -> ReceiptPrinter:
    """The printer for ``url``. Raises ``ValueError`` for a bad URL, width or profile.

    ``text="raster"`` prints every line as an image (for printers whose code pages
    do not match their profile).
    """
    url = (url or "none").strip()
    if url.lower() in ("none", "none://", ""):
        return NoPrinter()
    layout = Layout(paper_mm=paper_mm, profile=profile or "default", text=text)
    if url.lower().startswith("preview://"):
        from kiosk.hardware.printer.preview import PreviewPrinter

        parts = urlsplit(url)
        directory = (parts.netloc + parts.path) or "."
        return PreviewPrinter(url, Path(directory).expanduser(), layout)
    from kiosk.hardware.printer.escpos_printer import EscposPrinter
    from kiosk.hardware.printer.transports import parse_url

    return EscposPrinter(url, parse_url(url, timeout_s, layout.profile), layout)
