"""``picamera2``: the Raspberry Pi camera, grayscale from the lores YUV420 stream.

picamera2 comes from Raspberry Pi OS (``apt install python3-picamera2``) and is
reached from the kiosk's venv made with ``--system-site-packages``; it cannot be
pip-installed usefully, and a pip numpy 2.x breaks it (DESIGN.md s6). It is imported
only when this source starts. The camera runs with no preview; each frame is the
first ``height`` rows (the Y plane) of the lores buffer, whose shape is
``(height * 3 / 2, stride)``. Continuous autofocus is switched on where the camera
has it (Camera Module 3); exposure follows ``[camera]`` settings.
"""

import numpy as np

from kiosk.errors import HardwareError
from kiosk.hardware.camera.base import FrameSource

AF_MODES = {"manual": 0, "auto": 1, "continuous": 2}  # libcamera AfModeEnum values
INSTALL_HINT = ("on Raspberry Pi OS run 'sudo apt install python3-picamera2' and make the "
                "venv with --system-site-packages (see docs/scanning.md)")


def _import_picamera2():
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise HardwareError(f"picamera2 is not installed ({exc}): {INSTALL_HINT}") from None
    except ValueError as exc:  # "numpy.dtype size changed": pip numpy over apt picamera2
        raise HardwareError(f"picamera2 cannot load with this numpy ({exc}): keep numpy "
                            f"from apt, do not pip-install numpy 2.x in the venv") from None
    return Picamera2


def _af_enum(mode: str):
    """libcamera's AfModeEnum member when libcamera is importable, else its int value."""
    try:
        from libcamera import controls
    except ImportError:
        return AF_MODES[mode]
    return getattr(controls.AfModeEnum, mode.capitalize())


class Picamera2Source(FrameSource):
    """Frames from a Picamera2 camera; ``picamera2_factory`` replaces ``Picamera2`` in tests."""

    def __init__(self, options: dict, *, picamera2_factory=None):
        super().__init__("picamera2")
        self.options = options
        if options["autofocus"] not in AF_MODES and options["autofocus"] != "off":
            raise HardwareError(f"picamera2: autofocus {options['autofocus']!r} is not one of "
                                f"continuous, auto, manual, off")
        self._factory = picamera2_factory
        self._camera = None
        self.size = (options["width"] + options["width"] % 2, options["height"] + options["height"] % 2)

    def _open(self):
        factory = self._factory or _import_picamera2()
        try:
            camera = factory()
        except (RuntimeError, IndexError, OSError) as exc:
            raise HardwareError(f"picamera2: no camera found or it is busy ({exc}); check the "
                                "ribbon cable and that no other program uses it") from None
        try:
            camera.configure(self.configuration(camera))
            controls = self.controls(getattr(camera, "camera_controls", {}) or {})
            if controls:
                camera.set_controls(controls)
            camera.start()
        except Exception as exc:
            camera.close()
            raise HardwareError(f"picamera2: cannot start the camera: {exc}") from None
        self._camera = camera

    def configuration(self, camera) -> dict:
        """A video configuration: main and lores YUV420 at the frame size, no display."""
        frame_us = int(round(1_000_000 / float(self.options["fps"])))
        stream = {"size": self.size, "format": "YUV420"}
        return camera.create_video_configuration(
            main=dict(stream), lores=dict(stream), display=None, encode=None,
            buffer_count=4, queue=False,
            controls={"FrameDurationLimits": (frame_us, frame_us)})

    def controls(self, supported: dict) -> dict:
        """Autofocus and exposure controls from settings, limited to what the camera has."""
        opts, wanted = self.options, {}
        mode = opts["autofocus"]
        if mode != "off" and "AfMode" in supported:
            wanted["AfMode"] = _af_enum(mode)
            if mode == "manual" and opts["lens_position"] is not None:
                wanted["LensPosition"] = float(opts["lens_position"])
        if opts["exposure_time"] is not None:
            wanted.update(AeEnable=False, ExposureTime=int(opts["exposure_time"]))
        if opts["analogue_gain"] is not None:
            wanted["AnalogueGain"] = float(opts["analogue_gain"])
        if opts["exposure_value"] is not None:
            wanted["ExposureValue"] = float(opts["exposure_value"])
        return {k: v for k, v in wanted.items() if not supported or k in supported}

    def _grab(self, timeout):
        wait = timeout if timeout is not None else self.options["frame_timeout"]
        try:
            buffer = self._camera.capture_array("lores", wait=wait)
        except TimeoutError:
            raise HardwareError(f"picamera2: no frame within {wait:g} s (camera stalled "
                                "or disconnected)") from None
        except RuntimeError as exc:
            raise HardwareError(f"picamera2: capture failed: {exc}") from None
        return self.y_plane(buffer)

    def y_plane(self, buffer) -> np.ndarray:
        """The grayscale frame: the first ``height`` rows and ``width`` columns."""
        width, height = self.size
        buffer = np.asarray(buffer)
        if buffer.ndim != 2 or buffer.shape[0] < height or buffer.shape[1] < width:
            raise HardwareError(f"picamera2: lores buffer has shape {buffer.shape}, expected "
                                f"({height * 3 // 2}, >={width}) YUV420")
        return buffer[:height, :width]

    def _close(self):
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()
        finally:
            camera.close()
