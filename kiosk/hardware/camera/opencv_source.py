"""``opencv:N``: a USB webcam (or a V4L2 device path / stream URL) through OpenCV.

OpenCV is optional (``pip install 'redeem-kiosk[webcam]'``); it is imported when the
source starts. Frames are converted to grayscale; the driver buffer is kept at one
frame so that what is decoded is what the camera sees now.
"""

import time

from kiosk.errors import HardwareError
from kiosk.hardware.camera.base import FrameSource
from kiosk.i18n import Msg

RETRY_PAUSE = 0.01


def _target(text: str) -> int | str:
    return int(text) if text.isdigit() else text


class OpenCvSource(FrameSource):
    """Frames from ``cv2.VideoCapture(target)``."""

    reopenable = True  # unplugged and plugged back: the scanner opens it again

    def __init__(self, target: str, options: dict, *, capture_factory=None):
        super().__init__(f"opencv:{target}")
        self.target, self.options = _target(target), options
        self._factory = capture_factory
        self._capture = None
        self._cv2 = None

    def _open(self):
        try:
            import cv2
        except ImportError:
            raise HardwareError(Msg("{camera}: OpenCV is not installed; {fix}", camera=self.name,
                                    fix="pip install 'redeem-kiosk[webcam]'")) from None
        self._cv2 = cv2
        capture = (self._factory or cv2.VideoCapture)(self.target)
        if not capture.isOpened():
            raise HardwareError(Msg("{camera}: cannot open the camera (is it plugged in, and not used "
                                    "by another program?)", camera=self.name))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.options["width"])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options["height"])
        capture.set(cv2.CAP_PROP_FPS, float(self.options["fps"]))
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def _grab(self, timeout):
        """The next frame; retries a failing read until ``timeout`` then gives up."""
        limit = time.monotonic() + (timeout if timeout is not None else self.options["frame_timeout"])
        while not self._stopped.is_set():
            ok, image = self._capture.read()
            if ok and image is not None:
                if image.ndim == 2:
                    return image
                return self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
            if time.monotonic() >= limit:
                raise HardwareError(Msg("{camera}: the camera gave no frame (unplugged or failed?)",
                                        camera=self.name))
            time.sleep(RETRY_PAUSE)
        return None

    def _close(self):
        if self._capture is not None:
            self._capture.release()
            self._capture = None
