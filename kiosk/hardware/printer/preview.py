"""``preview://DIR``: each receipt becomes a PNG in DIR (for the demo and the docs).

Drawn with the kiosk font at printer resolution (8 dots a millimetre), so it shows
the wording, order and QR code of a real receipt; the exact glyphs of a thermal
printer's built-in font are not imitated.
"""

import contextlib
import os
import re
from pathlib import Path

from kiosk.core.receipt import Line, Logo, QRCode, Receipt, Rule
from kiosk.hardware.printer import faults, render
from kiosk.hardware.printer.base import ReceiptPrinter
from kiosk.hardware.printer.status import PrinterStatus
from kiosk.i18n import Msg


class PreviewPrinter(ReceiptPrinter):
    def __init__(self, url: str, directory: Path, layout: render.Layout):
        self.url, self.directory, self.layout = url, Path(directory), layout
        self.last_path: Path | None = None

    def image(self, receipt: Receipt):
        from kiosk.hardware.printer import raster  # Pillow's fonts and qrcode: first receipt

        width = self.layout.dots
        parts = []
        for block in receipt.blocks:
            if isinstance(block, Line):
                parts += raster.line_rows(block, width)
            elif isinstance(block, Rule):
                parts.append(raster.rule(width))
            elif isinstance(block, QRCode):
                parts.append(raster.qr_image(block.data, 6 if width >= 512 else 5, width))
            elif isinstance(block, Logo):
                try:
                    parts.append(raster.logo_image(block.path, width))
                except OSError:
                    pass  # as on paper: a bad logo does not stop the receipt
        return raster.stack(parts, width, margin=24)

    def print_receipt(self, receipt: Receipt) -> str | None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", receipt.redemption_id)
        name = f"receipt-{safe}{'-reprint' if receipt.reprint else ''}.png"
        target = self.directory / name
        part = target.with_name(f".{name}.part")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.image(receipt).save(part, format="PNG")
            os.replace(part, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            raise faults.classify(exc, Msg("preview folder {folder}", folder=self.directory)) from exc
        self.last_path = target
        return str(target)

    def status(self) -> PrinterStatus:
        d = self.directory
        probe = d if d.exists() else d.parent
        if os.access(probe, os.W_OK):
            return PrinterStatus("ok", Msg("Receipts are saved as PNG files in {folder}.", folder=d))
        return PrinterStatus("permission", Msg("Cannot write receipt previews to {folder}.", folder=d))
