"""Image pre-processing passes that help a QR decoder on hard camera frames.

Each function takes and returns a 2-D uint8 grayscale array and uses numpy and
Pillow only (OpenCV is not on the Pi image). They are what real scanners try when
the plain image fails (docs/scanning.md, "Decoding"):

``local_contrast``  subtract a smooth local mean and stretch: uneven light, glare,
                    a dim or washed-out screen (a cheap CLAHE-like normalisation)
``sharpen``         unsharp mask: a slightly out-of-focus code
``half_size``       2x2 average: removes the moire of a phone screen's pixel grid
``equalize``        global histogram equalisation: very dark or very bright frames
``darken``          gamma 2: glare and washed-out codes (the bright end spread out)
``widen``           twice as wide: a code tilted away about its vertical axis (a phone
                    turned sideways to the camera) is foreshortened across; stretched
                    back, its finder patterns are square enough for the detector
``heighten``        twice as high: the same for a phone tipped forward or back
"""

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps


def half_size(gray: np.ndarray) -> np.ndarray:
    """The image at half width and height (2x2 box average), for a cheaper decode."""
    h, w = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
    g = gray[:h, :w].astype(np.uint16)
    return ((g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2] + 2) >> 2).astype(np.uint8)


def local_contrast(gray: np.ndarray, cell: int = 8, gain: float = 3.0) -> np.ndarray:
    """``(gray - local mean) * gain + 128``; the local mean is taken on a ``cell``-times
    smaller copy, blurred and scaled back without interpolation (the blur makes it
    smooth enough, and a 1280x960 frame takes half the time: about 2 ms here)."""
    h, w = gray.shape
    if h < 2 * cell or w < 2 * cell:
        return gray
    image = Image.fromarray(gray)
    mean = image.reduce(cell).filter(ImageFilter.BoxBlur(2)).resize((w, h), Image.Resampling.NEAREST)
    # Pillow computes (image - mean) / scale + offset, clipped, in one C pass
    return np.asarray(ImageChops.subtract(image, mean, scale=1.0 / gain, offset=128))


def sharpen(gray: np.ndarray) -> np.ndarray:
    """Unsharp mask (radius 2 px, 200 %): for a slightly blurred code (costly: crops only)."""
    return np.asarray(Image.fromarray(gray).filter(ImageFilter.UnsharpMask(2, 200, 0)))


def equalize(gray: np.ndarray) -> np.ndarray:
    """Global histogram equalisation."""
    return np.asarray(ImageOps.equalize(Image.fromarray(gray)))


_DARKEN = (255.0 * (np.arange(256) / 255.0) ** 2.0 + 0.5).astype(np.uint8)


def darken(gray: np.ndarray) -> np.ndarray:
    """Gamma 2 (a lookup table): spreads the bright end, where glare and a washed-out
    code sit, and crushes the dark end."""
    return _DARKEN[gray]


def _stretch(gray: np.ndarray, sx: int, sy: int) -> np.ndarray:
    h, w = gray.shape
    return np.asarray(Image.fromarray(gray).resize((sx * w, sy * h), Image.Resampling.BILINEAR))


def widen(gray: np.ndarray) -> np.ndarray:
    """The image at twice its width (bilinear)."""
    return _stretch(gray, 2, 1)


def heighten(gray: np.ndarray) -> np.ndarray:
    """The image at twice its height (bilinear)."""
    return _stretch(gray, 1, 2)
