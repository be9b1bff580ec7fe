"""Laying a :class:`~kiosk.core.receipt.Receipt` out as ESC/POS bytes.

Rendering goes to a python-escpos ``Dummy`` with the configured profile, so the
bytes are complete before any transport is touched: a printer fault can never leave
half a receipt rendered, and the transport sends the job in one write.

Each text line is decided on its own: if every character is in one of the profile's
code pages it is sent as text (python-escpos switches code pages with ``ESC t``);
otherwise (Kazakh letters, Uzbek U+02BB, anything else) the line is drawn with the
kiosk font and sent as a ``GS v 0`` raster image, so every language prints.

python-escpos and the raster drawing (Pillow's fonts, qrcode) are imported on the
first receipt (:func:`kiosk.hardware.escpos_setup.load`), not when a :class:`Layout`
is made at start: the ``default`` profile needs no look-up, another profile name is
checked against python-escpos' printer database.
"""

import copy
import logging
import textwrap
from dataclasses import dataclass, field
from functools import cached_property

from kiosk.core.receipt import Line, Logo, QRCode, Receipt, Rule
from kiosk.hardware.escpos_setup import load
from kiosk.i18n import Msg

log = logging.getLogger(__name__)

PAPER_DOTS = {58: 384, 80: 576}  # printable dots at 203 dpi
CHAR_DOTS = {"small": 9, "normal": 12, "large": 24}  # font B, font A, double width


def profile_names() -> list[str]:
    return sorted(load("escpos.capabilities").CAPABILITIES["profiles"])


def get_profile(name: str):
    return load("escpos.capabilities").get_profile(name)


@dataclass
class Layout:
    """How receipts are laid out for one printer."""

    paper_mm: int = 80
    profile: str = "default"
    text: str = "auto"  # "auto": code pages where possible; "raster": every line as an image
    encodable_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.paper_mm not in PAPER_DOTS:
            raise ValueError(Msg("paper width must be 58 or 80 mm, not {value}", value=self.paper_mm))
        if self.profile != "default" and self.profile not in profile_names():  # "default" always is
            raise ValueError(Msg("unknown python-escpos profile {profile}; known: {known}",
                                 profile=repr(self.profile), known=", ".join(profile_names())))
        if self.text not in ("auto", "raster"):
            raise ValueError(Msg("text mode must be auto or raster, not {value}", value=repr(self.text)))

    @cached_property
    def dots(self) -> int:
        """Printable width: the paper's, or the profile's if that is narrower."""
        known = get_profile(self.profile).profile_data.get("media", {}).get("width", {}).get("pixels")
        paper = PAPER_DOTS[self.paper_mm]
        return min(paper, known) if isinstance(known, int) else paper

    @cached_property
    def encoder(self):
        """python-escpos' ``Encoder`` for the profile's code pages."""
        return load("escpos.magicencode").Encoder(get_profile(self.profile).get_code_pages())

    @cached_property
    def small_font(self) -> bool:
        """Whether the profile has font B (some 58 mm printers have only font A)."""
        return "1" in get_profile(self.profile).profile_data.get("fonts", {})

    def font(self, size: str) -> str:
        return "b" if size == "small" and self.small_font else "a"

    def columns(self, size: str) -> int:
        if size == "small" and not self.small_font:
            size = "normal"
        return self.dots // CHAR_DOTS[size]

    def encodable(self, text: str) -> bool:
        """True if a code page of the profile has every character of ``text``."""
        if self.text == "raster":
            return False
        return all(self._char_ok(ch) for ch in text)

    def _char_ok(self, ch: str) -> bool:
        if ord(ch) < 128:
            return ch.isprintable()
        if ch not in self.encodable_cache:
            enc = self.encoder
            self.encodable_cache[ch] = any(enc.can_encode(name, ch) for name in enc.codepages)
        return self.encodable_cache[ch]

    def device(self):
        """A python-escpos Dummy with this profile, its paper width filled in (for centring images)."""
        esc = load("escpos.printer").Dummy(profile=self.profile)
        data = copy.deepcopy(esc.profile.profile_data)
        data.setdefault("media", {})["width"] = {"mm": self.paper_mm, "pixels": self.dots}
        esc.profile.profile_data = data  # instance attribute: the shared profile stays as is
        return esc


def text_rows(line: Line, columns: int) -> list[str]:
    """The fixed-width rows of a text line (label left, value right)."""
    if line.right:
        if len(line.text) + 1 + len(line.right) <= columns:
            return [line.text + " " * (columns - len(line.text) - len(line.right)) + line.right]
        right = textwrap.wrap(line.right, columns) or [""]
        return (textwrap.wrap(line.text, columns) or [""]) + [r.rjust(columns) for r in right]
    return textwrap.wrap(line.text, columns, break_long_words=True) or [""]


class _Writer:
    """Feeds blocks to the Dummy, batching consecutive raster rows into one image."""

    def __init__(self, layout: Layout):
        from kiosk.hardware.printer import raster  # Pillow's fonts and qrcode: first receipt

        self.raster = raster
        self.layout, self.esc, self.pending = layout, layout.device(), []
        self.esc.hw("INIT")
        if "CP437" in layout.encoder.codepages:  # plain ASCII in the common page, whatever its slot
            self.esc.magic.write_with_encoding("CP437", None)

    def block(self, block) -> None:
        if isinstance(block, Line):
            self.line(block)
        elif isinstance(block, Rule):
            self.flush()
            self.esc.set_with_default()
            self.esc.textln("-" * self.layout.columns("normal"))
        elif isinstance(block, QRCode):
            self.flush()
            self.esc.set_with_default()
            box = 6 if self.layout.dots >= 512 else 5
            self.esc.qr(block.data, ec=load("escpos.constants").QR_ECLEVEL_M, size=box, native=False,
                        center=True)
        elif isinstance(block, Logo):
            self.logo(block)

    def line(self, line: Line) -> None:
        if not self.layout.encodable(line.text + line.right):
            self.pending += self.raster.line_rows(line, self.layout.dots)
            return
        self.flush()
        big = line.size == "large"
        self.esc.set_with_default(align=line.align, bold=line.bold, double_width=big,
                                  double_height=big, font=self.layout.font(line.size))
        for row in text_rows(line, self.layout.columns(line.size)):
            self.esc.textln(row)

    def logo(self, logo: Logo) -> None:
        self.flush()
        try:
            img = self.raster.logo_image(logo.path, self.layout.dots)
        except OSError as exc:  # a bad logo must not stop a receipt
            log.warning("receipt logo %s not printed: %s", logo.path, exc)
            return
        self.esc.set_with_default()
        self.esc.image(img, impl="bitImageRaster")

    def flush(self) -> None:
        if self.pending:
            self.esc.set_with_default()
            self.esc.image(self.raster.stack(self.pending, self.layout.dots), impl="bitImageRaster")
            self.pending = []

    def finish(self) -> bytes:
        self.flush()
        self.esc.set_with_default()
        self.esc.cut()
        return self.esc.output


def render(receipt: Receipt, layout: Layout) -> bytes:
    """The complete ESC/POS job for ``receipt``: init, lines, QR, feed and cut."""
    writer = _Writer(layout)
    for block in receipt.blocks:
        writer.block(block)
    return writer.finish()
