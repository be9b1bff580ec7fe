"""``replay:PATH``: plays a folder of images, one image, or a video file as a camera.

This is the camera of the demo, the tests and the benchmark. Frames are paced at
``fps`` (0 = as fast as they are read, for offline analysis) and the recording
either loops or plays once. Images are read in name order (zero-pad numbers:
``frame-0002.png`` before ``frame-0010.png``). Videos need OpenCV (the ``webcam``
extra); images only need Pillow.

Like the Pi camera's two streams, a recorded frame larger than ``width`` x
``height`` is played scaled down to fit it (area average, as the camera's ISP
does), with the frame itself, scaled to fit ``full_width`` x ``full_height``, as
``Frame.full``: the decoder's closer look sees what it would see on the kiosk.
Frames that already fit are played as they are, without a full view.
"""

import time
from pathlib import Path

import numpy as np
from PIL import Image

from kiosk.errors import HardwareError
from kiosk.hardware.camera.base import FrameSource
from kiosk.i18n import Msg

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"}
CACHE_PIXELS = 64_000_000  # keep decoded images of a looping replay up to this size


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_gray(path: Path) -> np.ndarray:
    """An image file as a grayscale uint8 array, or a HardwareError naming the file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except (OSError, ValueError) as exc:
        raise HardwareError(Msg("replay: cannot read image {path}: {error}", path=path, error=exc)) from None


class _Images:
    """Frames from a list of image files (decoded lazily, cached while small)."""

    def __init__(self, paths: list[Path]):
        self.paths, self._cache, self._pixels = paths, {}, 0

    def __len__(self):
        return len(self.paths)

    def get(self, position: int) -> np.ndarray:
        if position in self._cache:
            return self._cache[position]
        gray = load_gray(self.paths[position])
        if self._pixels + gray.size <= CACHE_PIXELS:
            self._cache[position] = gray
            self._pixels += gray.size
        return gray

    def close(self):
        self._cache.clear()


class _Video:
    """Frames from a video file through OpenCV."""

    def __init__(self, path: Path):
        try:
            import cv2
        except ImportError:
            raise HardwareError(Msg(
                "replay: {path} is a video; playing videos needs OpenCV ({fix}), or replay a folder "
                "of images", path=path, fix="pip install 'redeem-kiosk[webcam]'")) from None
        self.cv2, self.path = cv2, path
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise HardwareError(Msg("replay: OpenCV cannot open video {path}", path=path))

    def next(self) -> np.ndarray | None:
        ok, image = self.capture.read()
        if not ok:
            return None
        return image if image.ndim == 2 else self.cv2.cvtColor(image, self.cv2.COLOR_BGR2GRAY)

    def rewind(self) -> bool:
        return bool(self.capture.set(self.cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self):
        self.capture.release()


def fit(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``gray`` scaled down (area average) to fit ``size`` = (width, height); as it is
    when it already fits."""
    h, w = gray.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    if scale >= 1:
        return gray
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(gray).resize(shape, Image.Resampling.BOX))


class ReplaySource(FrameSource):
    """Plays recorded frames as if they came from a camera: ``size`` is the lores
    stream's (width, height), ``full_size`` the main stream's (None: no full view)."""

    def __init__(self, path: str | Path, *, fps: float = 30.0, loop: bool = True,
                 size: tuple[int, int] = (640, 480), full_size: tuple[int, int] | None = (1280, 960)):
        super().__init__(f"replay:{path}")
        self.path, self.fps, self.loop = Path(path).expanduser(), float(fps), bool(loop)
        self.size = size
        self.full_size = full_size if full_size and full_size[0] > 0 and full_size[1] > 0 else None
        if self.fps < 0:
            raise HardwareError(Msg("replay: fps must not be negative, got {fps}", fps=fps))
        self.realtime = self.fps > 0
        self._media = None
        self._position = 0
        self._due = 0.0

    def _open(self):
        if not self.path.exists():
            raise HardwareError(Msg("replay: {path} does not exist", path=self.path))
        if self.path.is_dir():
            paths = list_images(self.path)
            if not paths:
                raise HardwareError(Msg("replay: folder {path} holds no images ({kinds})", path=self.path,
                                        kinds=", ".join(sorted(IMAGE_SUFFIXES))))
            self._media = _Images(paths)
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._media = _Images([self.path])
        else:
            self._media = _Video(self.path)
        self._position = 0
        self._due = time.monotonic()

    def _grab(self, timeout):
        gray = self._next_image()
        if gray is None:
            return None
        self._pace()
        return self._streams(gray)

    def _streams(self, gray: np.ndarray):
        """The lores frame, or ``(lores, full)`` for a frame larger than the lores size."""
        h, w = gray.shape[:2]
        if w <= self.size[0] and h <= self.size[1]:
            return gray
        lores = fit(gray, self.size)
        if self.full_size is None:
            return lores
        return lores, fit(gray, self.full_size)

    def _next_image(self) -> np.ndarray | None:
        media = self._media
        if isinstance(media, _Images):
            if self._position >= len(media):
                if not self.loop:
                    return None
                self._position = 0
            self._position += 1
            return media.get(self._position - 1)
        gray = media.next()
        if gray is None and self.loop and media.rewind():
            gray = media.next()
        return gray

    def _pace(self):
        """Wait until this frame is due, so frames come at ``fps`` (stop() interrupts)."""
        if not self.realtime:
            return
        delay = self._due - time.monotonic()
        if delay > 0:
            self._stopped.wait(delay)
        self._due = max(self._due + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)

    def _close(self):
        if self._media is not None:
            self._media.close()
            self._media = None
