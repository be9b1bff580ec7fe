"""Frames, the frame-source interface, and the factory that picks a source by name.

A *source spec* says where frames come from (DESIGN.md s6, config ``[camera] source``):

``picamera2``
    The Raspberry Pi camera (lores YUV420 stream, its Y plane as the grayscale frame).
``opencv:N`` (or ``opencv:/dev/videoN``, ``opencv:rtsp://...``)
    A USB webcam or any other device/URL OpenCV can open.
``replay:PATH[?fps=30&loop=1]``
    A folder of images (played in name order), one image, or a video file.
``none``
    No camera: ``available`` is False and the UI offers manual entry only.

Every backend module is imported only when its spec is opened, so this package
imports on any machine; a missing library is a :class:`HardwareError` that says
what to install.
"""

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np

from kiosk.errors import ConfigError, HardwareError
from kiosk.hardware.decoder import DEFAULT_BUDGET_MS, IDLE_BUDGET_MS
from kiosk.i18n import Msg

SPEC_FORMS = "picamera2, opencv:N, replay:PATH[?fps=30&loop=1] or none"

# [camera] keys a source understands, with their types and defaults.
SETTINGS = {
    "width": (int, 640),
    "height": (int, 480),
    "fps": ((int, float), 30),
    "loop": (bool, True),
    "frame_timeout": ((int, float), 3.0),
    "full_width": (int, 1280),        # picamera2 main stream (0: lores only)
    "full_height": (int, 960),
    "autofocus": (str, "continuous"),
    "af_range": (str, "macro"),
    "af_speed": (str, "fast"),
    "lens_position": ((int, float), None),
    "metering": (str, "centre"),
    "exposure_constraint": (str, "highlight"),
    "exposure_time": (int, None),
    "analogue_gain": ((int, float), None),
    "exposure_value": ((int, float), None),
    "budget_ms": ((int, float), DEFAULT_BUDGET_MS),    # the auto decoder's time budget per frame
    "idle_budget_ms": ((int, float), IDLE_BUDGET_MS),  # ... for a frame with no sign of a code
}
# [camera] keys that take one of a few words (the picamera2 controls they become are in
# docs/scanning.md).
CHOICES = {
    "autofocus": ("continuous", "auto", "manual", "off"),
    "af_range": ("normal", "macro", "full"),
    "af_speed": ("normal", "fast"),
    "metering": ("centre", "spot", "matrix"),
    "exposure_constraint": ("normal", "highlight", "shadows"),
}
STOP_WAIT = 5.0  # seconds stop() waits for a read in progress before closing anyway
_POSITIVE = ("width", "height", "fps", "frame_timeout", "exposure_time", "analogue_gain",
             "budget_ms", "idle_budget_ms")
_NOT_NEGATIVE = ("full_width", "full_height")


@dataclass
class Frame:
    """One grayscale camera frame.

    ``gray`` is a C-contiguous uint8 array of shape (height, width); ``index`` counts
    frames from 0 in capture order; ``captured_at`` is ``time.monotonic()`` when the
    frame was taken, so latency can be measured from capture to event. ``full`` is
    the same view at the camera's full resolution when the source has one (the
    picamera2 main stream), for a closer look where ``gray`` is not enough.
    """

    gray: np.ndarray
    index: int
    captured_at: float = field(default_factory=time.monotonic)
    full: np.ndarray | None = None


class FrameSource:
    """A stream of grayscale frames; subclasses implement ``_open``, ``_grab``, ``_close``.

    ``read()`` blocks until the next frame and returns it, or returns None when a
    source that plays once has ended (or after ``stop()``). A camera that gives no
    frame raises :class:`HardwareError`. ``realtime`` says whether frames arrive on
    their own clock (cameras, paced replays): the scanner then drops stale frames.
    ``reopenable`` says whether a failure may be temporary (a camera unplugged and
    plugged back): the scanner then closes it with :meth:`reset` and opens it again.
    ``_grab`` returns the grayscale image, or ``(gray, full)`` with a full-resolution
    view as well.
    """

    available = True
    realtime = True
    reopenable = False

    def __init__(self, name: str):
        self.name = name
        self._index = 0
        self._started = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # held while a read is inside the backend

    def start(self) -> "FrameSource":
        """Open the device (idempotent)."""
        with self._lock:
            if not self._started:
                self._stopped.clear()
                self._open()
                self._started = True
        return self

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None at the end (or once stopped)."""
        if self._stopped.is_set():
            return None
        if not self._started:
            self.start()
        with self._reading:
            gray = self._grab(timeout) if self._started else None
        if gray is None or self._stopped.is_set():
            return None
        full = None
        if isinstance(gray, tuple):
            gray, full = gray
        frame = Frame(as_gray(gray), self._index, time.monotonic(),
                      None if full is None else as_gray(full))
        self._index += 1
        return frame

    def reset(self) -> None:
        """Close the device after a failure; the next ``read()`` opens it again."""
        with self._reading, self._lock:
            if self._started:
                self._started = False
                try:
                    self._close()
                except Exception:  # a device that failed may fail to close too
                    pass

    def stop(self) -> None:
        """Release the device; a ``read()`` waiting in another thread returns None."""
        self._stopped.set()
        got = self._reading.acquire(timeout=STOP_WAIT)  # let a read in progress finish
        try:
            with self._lock:
                if self._started:
                    self._started = False
                    self._close()
        finally:
            if got:
                self._reading.release()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    # Backends override these three.
    def _open(self) -> None:
        pass

    def _grab(self, timeout: float | None) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


def as_gray(image: np.ndarray) -> np.ndarray:
    """A C-contiguous uint8 2-D view/copy of ``image`` (BGR is converted to luma)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        b, g, r = (image[..., i].astype(np.float32) for i in range(3))
        image = (0.114 * b + 0.587 * g + 0.299 * r + 0.5).astype(np.uint8)
    if image.ndim != 2:
        raise HardwareError(Msg("frame has shape {shape}, expected a grayscale image", shape=image.shape))
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``"replay:/x?fps=5"`` -> ``("replay", "/x", {"fps": "5"})``."""
    spec = (spec or "").strip()
    kind, _, rest = spec.partition(":")
    query: dict[str, str] = {}
    if "?" in rest:
        head, _, tail = rest.rpartition("?")
        pairs = parse_qsl(tail, keep_blank_values=True)
        if pairs and all(k for k, _ in pairs):
            rest, query = head, dict(pairs)
    return kind.lower(), rest, query


def merged_settings(settings: dict | None, query: dict[str, str], spec: str) -> dict:
    """Defaults, then ``settings`` (from config), then ``?key=value`` from the spec."""
    result = {key: default for key, (_, default) in SETTINGS.items()}
    result.update({k: v for k, v in (settings or {}).items() if v is not None})
    for key, text in query.items():
        if key not in SETTINGS:
            raise ConfigError(Msg("camera source {spec}: unknown option {key}", spec=repr(spec), key=repr(key)))
        result[key] = _parse_option(spec, key, text)
    return result


def _parse_option(spec: str, key: str, text: str):
    kind = SETTINGS[key][0]
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if kind is str:
            return text
        return int(text) if kind is int else float(text)
    except ValueError:
        raise ConfigError(Msg("camera source {spec}: {key}={value} is not valid", spec=repr(spec), key=key,
                               value=repr(text))) from None


def settings_from_section(section) -> dict:
    """The ``[camera]`` options a source understands, type-checked by the config Section."""
    result = {}
    for key, (kind, default) in SETTINGS.items():
        value = section.get(key, kind, default)
        if value is not None and key in _POSITIVE and value <= 0:
            raise section.error(key, Msg("must be greater than 0"))
        if value is not None and key in _NOT_NEGATIVE and value < 0:
            raise section.error(key, Msg("must not be negative"))
        if key in CHOICES and value not in CHOICES[key]:
            raise section.error(key, Msg("must be one of {choices}", choices=", ".join(CHOICES[key])))
        result[key] = value
    return result


def open_source(spec: str, settings: dict | None = None, *, once: bool = False,
                **backend_options) -> FrameSource:
    """The frame source for ``spec`` (see module docstring); not started yet.

    ``settings`` holds ``[camera]`` options (width, height, fps, autofocus ...);
    ``once=True`` makes a replay play once whatever its options say.
    ``backend_options`` go to the backend (e.g. ``picamera2_factory`` for tests).
    """
    kind, rest, query = split_spec(spec)
    options = merged_settings(settings, query, spec)
    if once:
        options["loop"] = False
    if kind == "none" and not rest:
        from kiosk.hardware.camera.none import NoCamera

        return NoCamera()
    if kind == "replay" and rest:
        from kiosk.hardware.camera.replay import ReplaySource

        return ReplaySource(rest, fps=float(options["fps"]), loop=bool(options["loop"]),
                            size=(options["width"], options["height"]),
                            full_size=(options["full_width"], options["full_height"]))
    if kind == "opencv" and rest:
        from kiosk.hardware.camera.opencv_source import OpenCvSource

        return OpenCvSource(rest, options, **backend_options)
    if kind == "picamera2" and not rest:
        from kiosk.hardware.camera.picamera2_source import Picamera2Source

        return Picamera2Source(options, **backend_options)
    raise ConfigError(Msg("camera source {spec} is not one of: {forms}", spec=repr(spec), forms=SPEC_FORMS))
