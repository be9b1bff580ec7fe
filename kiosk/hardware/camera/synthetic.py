"""Synthetic camera frames of a phone showing a wallet card, for demos, tests and benches.

Real cameras see codes tilted, blurred, noisy, washed out, with glare from a glossy
screen, and in dark mode (light modules on a dark card). These helpers draw such
frames with numpy and Pillow only, so the replay camera can be fed anywhere.
"""

from pathlib import Path

import numpy as np
import qrcode
from PIL import Image, ImageDraw, ImageFilter


def qr_matrix(payload: str, border: int = 4) -> np.ndarray:
    """The QR code for ``payload`` as a bool array (True = dark module), with quiet zone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border)
    code.add_data(payload)
    code.make(fit=True)
    return np.array(code.get_matrix(), dtype=bool)


def wallet_card(payload: str, *, size: tuple[int, int] = (640, 480), module_px: int = 5,
                dark: bool = False, matrix: np.ndarray | None = None) -> np.ndarray:
    """A grayscale frame: a phone screen with a wallet card whose QR holds ``payload``.

    ``dark=True`` draws the dark-mode card: light modules on a dark background.
    ``matrix`` (bool, True = dark module, with quiet zone) replaces the qrcode
    library's rendering, e.g. a code made with segno.
    """
    width, height = size
    modules = qr_matrix(payload) if matrix is None else np.asarray(matrix, dtype=bool)
    ink, paper = (235, 28) if dark else (18, 250)
    code = np.where(np.kron(modules, np.ones((module_px, module_px), dtype=bool)), ink, paper)
    side = code.shape[0]
    frame = Image.new("L", size, 70)  # the counter around the phone
    draw = ImageDraw.Draw(frame)
    cx, cy = width // 2, height // 2
    phone = (cx - side // 2 - 40, max(4, cy - side // 2 - 90), cx + side // 2 + 40,
             min(height - 4, cy + side // 2 + 60))
    draw.rounded_rectangle(phone, radius=24, fill=12)  # the phone's bezel
    card = (phone[0] + 12, phone[1] + 14, phone[2] - 12, phone[3] - 14)
    draw.rounded_rectangle(card, radius=14, fill=paper if not dark else 40)
    title = 90 if not dark else 200
    draw.rectangle((card[0] + 16, card[1] + 14, card[0] + 16 + side // 2, card[1] + 30), fill=title)
    draw.rectangle((card[0] + 16, card[1] + 38, card[0] + 16 + side // 3, card[1] + 48), fill=title)
    left, top = cx - side // 2, min(cy - side // 2 + 10, height - side - 2)
    frame.paste(Image.fromarray(code.astype(np.uint8)), (left, top))
    return np.asarray(frame).copy()


def perspective(gray: np.ndarray, amount: float = 0.15) -> np.ndarray:
    """The frame seen at a slant: the top edge shrunk by ``amount`` of the width."""
    h, w = gray.shape
    dx, dy = amount * w / 2, amount * h / 4
    # Where each output corner samples the input (PIL maps output -> input).
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(dx, dy), (w - dx, 0), (w, h), (0, h - dy)]
    coeffs = _perspective_coeffs(dst, src)
    image = Image.fromarray(gray).transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                            Image.Resampling.BILINEAR, fillcolor=70)
    return np.asarray(image).copy()


def _perspective_coeffs(out_pts, in_pts):
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out_pts, in_pts, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def blur(gray: np.ndarray, radius: float = 1.5) -> np.ndarray:
    """Out of focus (Gaussian blur of ``radius`` pixels)."""
    return np.asarray(Image.fromarray(gray).filter(ImageFilter.GaussianBlur(radius))).copy()


def noise(gray: np.ndarray, sigma: float = 18.0, seed: int = 0) -> np.ndarray:
    """Sensor noise in low light: Gaussian noise of ``sigma`` grey levels."""
    rng = np.random.default_rng(seed)
    return np.clip(gray + rng.normal(0, sigma, gray.shape), 0, 255).astype(np.uint8)


def low_contrast(gray: np.ndarray, low: int = 105, high: int = 150) -> np.ndarray:
    """Washed out: the grey range squeezed into ``low..high``."""
    return (low + gray.astype(np.float32) * (high - low) / 255.0).astype(np.uint8)


def glare(gray: np.ndarray, at: tuple[float, float] = (0.42, 0.4), radius: float = 0.12,
          strength: float = 150.0) -> np.ndarray:
    """A reflection on a glossy screen: a bright blob at ``at`` (fractions of w, h)."""
    h, w = gray.shape
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - at[0] * w) ** 2 + (y - at[1] * h) ** 2) / (radius * min(w, h)) ** 2
    return np.clip(gray + strength * np.exp(-r2), 0, 255).astype(np.uint8)


def invert(gray: np.ndarray) -> np.ndarray:
    """The negative image (a light-on-dark code from a plain one)."""
    return np.invert(gray)


def blank(size: tuple[int, int] = (640, 480), seed: int = 0) -> np.ndarray:
    """A frame with no code at all: the counter, softly lit, with sensor noise."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    return noise((60 + 40 * x / w + 20 * y / h).astype(np.uint8), 6.0, seed)


def screen_grid(gray: np.ndarray, period: float = 1.15, angle: float = 2.5,
                depth: float = 0.5, gap: float = 0.3) -> np.ndarray:
    """Moire: the phone screen's pixel grid (dark gaps, ``gap`` of each screen pixel,
    ``depth`` darker, one every ``period`` camera pixels), turned by ``angle`` degrees,
    as each sensor pixel averages it: near one camera pixel per screen pixel the two
    grids beat into broad light and dark fringes across the code."""
    h, w = gray.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)

    def covered(t):  # length of gap in [0, t] of a square wave of the grid's period
        g = gap * period
        return np.floor(t / period) * g + np.clip(t % period - (period - g), 0, g)

    # Gap fraction seen by each sensor pixel along each axis; a pixel's light-sensitive
    # aperture is about half its pitch (and demosaicking samples), hence the beats.
    fu = (covered(u + 0.25) - covered(u - 0.25)) / 0.5
    fv = (covered(v + 0.25) - covered(v - 0.25)) / 0.5
    mask = 1.0 - depth * (fu + fv - fu * fv)
    return np.clip(gray * mask, 0, 255).astype(np.uint8)


def dim(gray: np.ndarray, level: float = 0.3, floor: int = 8) -> np.ndarray:
    """A phone at low brightness under a brighter counter: the screen's range shrunk
    toward black (``level`` of its brightness), the camera then amplifying noise."""
    return (floor + gray.astype(np.float32) * level).astype(np.uint8)


PHONE_SCENES = ("moire", "screen glare", "dark mode", "low brightness")


def phone_screen(payload: str, scene: str, *, size: tuple[int, int] = (1280, 960),
                 seed: int = 0) -> np.ndarray:
    """A camera frame of a phone showing ``payload`` under one of :data:`PHONE_SCENES`,
    with a seed-chosen code size, tilt, focus and sensor noise: the scene set of
    bench/scan.py (a frame at ``size``; the kiosk's lores stream is half of it)."""
    rng = np.random.default_rng(seed)
    module = int(rng.integers(6, 11)) * size[0] // 1280 or 1
    frame = wallet_card(payload, size=size, module_px=module, dark=scene == "dark mode")
    if scene == "moire":
        frame = screen_grid(frame, period=float(rng.uniform(0.9, 1.25)), angle=float(rng.uniform(-4, 4)),
                            depth=float(rng.uniform(0.5, 0.8)))
    elif scene == "screen glare":
        frame = low_contrast(frame, 40, 225)
        frame = glare(frame, at=(float(rng.uniform(0.38, 0.62)), float(rng.uniform(0.38, 0.62))),
                      radius=float(rng.uniform(0.08, 0.16)), strength=float(rng.uniform(150, 230)))
    elif scene == "dark mode":
        frame = glare(frame, at=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
                      radius=float(rng.uniform(0.08, 0.14)), strength=float(rng.uniform(60, 140)))
    elif scene == "low brightness":
        frame = dim(frame, float(rng.uniform(0.12, 0.25)))
    else:
        raise ValueError(f"unknown phone scene {scene!r}: one of {', '.join(PHONE_SCENES)}")
    frame = perspective(frame, float(rng.uniform(0.0, 0.2)))
    frame = blur(frame, float(rng.uniform(0.6, 1.6)) * size[0] / 1280)
    return noise(frame, float(rng.uniform(3, 9)) * (2.0 if scene == "low brightness" else 1.0),
                 seed=seed)


def write_frames(folder: Path, frames: list[np.ndarray], prefix: str = "frame") -> Path:
    """Saves frames as ``prefix-00000.png`` ... in ``folder`` (a replay: source)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, gray in enumerate(frames):
        Image.fromarray(gray).save(folder / f"{prefix}-{i:05d}.png")
    return folder
