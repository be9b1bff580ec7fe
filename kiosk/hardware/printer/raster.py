"""Drawing receipt pieces as black-on-white Pillow images with the kiosk's font.

Used for the lines a printer's code pages cannot show (Kazakh letters, Uzbek U+02BB)
and for the whole ``preview://`` receipt. Sizes are in printer dots (203 dpi: 8 dots a
millimetre), so a raster line is about as tall as the printer's own font A.
"""

from functools import cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from kiosk.core.receipt import Line

FONT_DIR = Path(__file__).resolve().parents[2] / "assets" / "fonts"
PX = {"small": 20, "normal": 26, "large": 44}
GAP = 16  # dots between a label and its value


@cache
def font(size: str, bold: bool) -> ImageFont.FreeTypeFont:
    """The kiosk font at a receipt size. Pillow's basic layout: the four languages are
    Latin and Cyrillic with precomposed letters (no shaping or bidi needed), and it
    spares the UI process Pillow's raqm, HarfBuzz and FriBiDi (about 2.4 MB)."""
    name = "NotoSans-Bold.ttf" if bold else "NotoSans-Regular.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), PX[size], layout_engine=ImageFont.Layout.BASIC)


def _width(text: str, face: ImageFont.FreeTypeFont) -> float:
    return face.getlength(text)


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` dots; words longer than a row are split."""
    rows, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if _width(trial, face) <= width:
            current = trial
            continue
        if current:
            rows.append(current)
        while _width(word, face) > width:  # split an over-long word
            cut = max(1, next(i for i in range(len(word), 0, -1) if _width(word[:i], face) <= width))
            rows.append(word[:cut])
            word = word[cut:]
        current = word
    if current or not rows:
        rows.append(current)
    return rows


def _row(face, height: int, width: int, left: str, right: str = "", align: str = "left") -> Image.Image:
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    y = height - face.getmetrics()[1] - 2  # baseline: descent plus a small margin
    x = (width - _width(left, face)) / 2 if align == "center" else 0
    draw.text((x, y), left, font=face, fill=0, anchor="ls")
    if right:
        draw.text((width, y), right, font=face, fill=0, anchor="rs")
    return img


def line_rows(line: Line, width: int) -> list[Image.Image]:
    """One image per printed row of ``line`` (wrapped to ``width`` dots)."""
    face = font(line.size, line.bold)
    ascent, descent = face.getmetrics()
    height = ascent + descent + 4
    if line.right:
        if _width(line.text, face) + GAP + _width(line.right, face) <= width:
            return [_row(face, height, width, line.text, line.right)]
        rows = [_row(face, height, width, r) for r in wrap(line.text, face, width)]
        return rows + [_row(face, height, width, "", r) for r in wrap(line.right, face, width)]
    return [_row(face, height, width, r, align=line.align) for r in wrap(line.text, face, width)]


def rule(width: int) -> Image.Image:
    img = Image.new("L", (width, 12), 255)
    ImageDraw.Draw(img).line([(0, 6), (width, 6)], fill=0, width=2)
    return img


def qr_image(data: str, box: int, width: int) -> Image.Image:
    """The QR code, ``box`` dots a module, centred on a ``width``-dot row."""
    code = qrcode.QRCode(box_size=box, border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    img = code.make_image().get_image().convert("L")
    return centre(img, width)


def logo_image(path: str, width: int, max_height: int = 160) -> Image.Image:
    """The configured logo, scaled to fit, as grayscale on white."""
    with Image.open(path) as src:
        img = src.convert("RGBA")
    flat = Image.new("RGBA", img.size, (255, 255, 255, 255))
    flat.alpha_composite(img)
    img = flat.convert("L")
    img.thumbnail((width, max_height))
    return centre(img, width)


def centre(img: Image.Image, width: int) -> Image.Image:
    if img.width >= width:
        return img.crop((0, 0, width, img.height))
    out = Image.new("L", (width, img.height), 255)
    out.paste(img, ((width - img.width) // 2, 0))
    return out


def stack(images: list[Image.Image], width: int, margin: int = 0) -> Image.Image:
    """Images one under the other on a white sheet ``width + 2*margin`` wide."""
    height = sum(i.height for i in images) + 2 * margin
    sheet = Image.new("L", (width + 2 * margin, max(height, 1)), 255)
    y = margin
    for img in images:
        sheet.paste(img, (margin, y))
        y += img.height
    return sheet
