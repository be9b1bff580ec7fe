"""``picamera2``: the Raspberry Pi camera: a lores stream to decode, a main stream to look closer.

picamera2 comes from Raspberry Pi OS (``apt install python3-picamera2``) and is
reached from the kiosk's venv made with ``--system-site-packages``; it cannot be
pip-installed usefully, and a pip numpy 2.x breaks it (DESIGN.md s6). It is imported
only when this source starts. The camera runs with no preview and two YUV420
streams of the same field of view: ``lores`` at ``width``x``height`` (the frame every
decode starts from) and ``main`` at ``full_width``x``full_height`` (the decoder's
closer look, ``Frame.full``). Each capture holds one request and copies only the Y
(luma) plane of each stream, never the colour planes. Camera Module 3 autofocus
(continuous, near range, fast) and exposure metering that keeps a bright phone
screen readable are set where the camera has the controls (docs/scanning.md).
"""

import numpy as np

from kiosk.errors import HardwareError
from kiosk.hardware.camera.base import FrameSource
from kiosk.i18n import N_, Msg

# libcamera enum values (control_ids.yaml), used when libcamera's Python enums are absent.
ENUMS = {
    "AfModeEnum": {"manual": 0, "auto": 1, "continuous": 2},
    "AfRangeEnum": {"normal": 0, "macro": 1, "full": 2},
    "AfSpeedEnum": {"normal": 0, "fast": 1},
    "AeMeteringModeEnum": {"centre": 0, "spot": 1, "matrix": 2},
    "AeConstraintModeEnum": {"normal": 0, "highlight": 1, "shadows": 2},
}
# libcamera's Python member names where they differ from the setting's word.
MEMBER = {("AeMeteringModeEnum", "centre"): "CentreWeighted",
          ("AeConstraintModeEnum", "normal"): "Normal"}
AF_MODES = ENUMS["AfModeEnum"]
CHOICES = {"autofocus": ("AfModeEnum", ("off",)), "af_range": ("AfRangeEnum", ()),
           "af_speed": ("AfSpeedEnum", ()), "metering": ("AeMeteringModeEnum", ()),
           "exposure_constraint": ("AeConstraintModeEnum", ())}
INSTALL_HINT = N_("on Raspberry Pi OS run 'sudo apt install python3-picamera2' and make the "
                   "venv with --system-site-packages (see docs/scanning.md)")


def _import_picamera2():
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise HardwareError(Msg("picamera2 is not installed ({error}): {hint}", error=exc,
                                hint=Msg(INSTALL_HINT))) from None
    except ValueError as exc:  # "numpy.dtype size changed": pip numpy over apt picamera2
        raise HardwareError(Msg("picamera2 cannot load with this numpy ({error}): keep numpy from apt, "
                                "do not pip-install numpy 2.x in the venv", error=exc)) from None
    return Picamera2


def _mapped_array():
    """picamera2's MappedArray (a view of a request's buffer without copying), if any."""
    try:
        from picamera2 import MappedArray
    except (ImportError, ValueError):
        return None
    return MappedArray


def _enum(kind: str, word: str):
    """libcamera's enum member (``controls.AfRangeEnum.Macro``) when libcamera is
    importable, else its int value."""
    try:
        from libcamera import controls
    except ImportError:
        return ENUMS[kind][word]
    return getattr(getattr(controls, kind), MEMBER.get((kind, word), word.capitalize()))


def _even(n: int) -> int:
    return n + n % 2


class Picamera2Source(FrameSource):
    """Frames from a Picamera2 camera; ``picamera2_factory`` replaces ``Picamera2`` and
    ``mapped_array`` its ``MappedArray`` in tests."""

    reopenable = True  # unplugged and plugged back: the scanner opens it again

    def __init__(self, options: dict, *, picamera2_factory=None, mapped_array=None):
        super().__init__("picamera2")
        self.options = options
        for key, (kind, extra) in CHOICES.items():
            if options[key] not in ENUMS[kind] and options[key] not in extra:
                raise HardwareError(Msg("picamera2: {key} {value} is not one of {choices}", key=key,
                                        value=repr(options[key]),
                                        choices=", ".join(list(ENUMS[kind]) + list(extra))))
        self._factory, self._mapped = picamera2_factory, mapped_array
        self._camera = None
        self.size = (_even(options["width"]), _even(options["height"]))
        full = (_even(options["full_width"]), _even(options["full_height"]))
        # No main stream of its own when it would not be larger than lores.
        self.full_size = full if full[0] > self.size[0] and full[1] > self.size[1] else None

    def _open(self):
        factory = self._factory or _import_picamera2()
        if self._mapped is None and self._factory is None:
            self._mapped = _mapped_array()
        try:
            camera = factory()
        except (RuntimeError, IndexError, OSError) as exc:
            raise HardwareError(Msg("picamera2: no camera found or it is busy ({error}); check the "
                                    "ribbon cable and that no other program uses it", error=exc)) from None
        try:
            camera.configure(self.configuration(camera))
            controls = self.controls(getattr(camera, "camera_controls", {}) or {})
            if controls:
                camera.set_controls(controls)
            camera.start()
        except Exception as exc:
            camera.close()
            raise HardwareError(Msg("picamera2: cannot start the camera: {error}", error=exc)) from None
        self._camera = camera

    def configuration(self, camera) -> dict:
        """A video configuration: lores YUV420 at the frame size, main YUV420 at the full
        size (or the frame size), no display or encoder, fixed frame rate."""
        frame_us = int(round(1_000_000 / float(self.options["fps"])))
        lores = {"size": self.size, "format": "YUV420"}
        main = {"size": self.full_size or self.size, "format": "YUV420"}
        return camera.create_video_configuration(
            main=main, lores=lores, display=None, encode=None,
            buffer_count=4, queue=False,
            controls={"FrameDurationLimits": (frame_us, frame_us)})

    def controls(self, supported: dict) -> dict:
        """Autofocus and exposure controls from settings, limited to what the camera has."""
        opts, wanted = self.options, {}
        mode = opts["autofocus"]
        if mode != "off" and "AfMode" in supported:
            wanted["AfMode"] = _enum("AfModeEnum", mode)
            if mode == "manual" and opts["lens_position"] is not None:
                wanted["LensPosition"] = float(opts["lens_position"])
            if mode != "manual":
                wanted["AfRange"] = _enum("AfRangeEnum", opts["af_range"])
                wanted["AfSpeed"] = _enum("AfSpeedEnum", opts["af_speed"])
        if opts["exposure_time"] is not None:
            wanted.update(AeEnable=False, ExposureTime=int(opts["exposure_time"]))
        else:
            wanted["AeMeteringMode"] = _enum("AeMeteringModeEnum", opts["metering"])
            wanted["AeConstraintMode"] = _enum("AeConstraintModeEnum", opts["exposure_constraint"])
        if opts["analogue_gain"] is not None:
            wanted["AnalogueGain"] = float(opts["analogue_gain"])
        if opts["exposure_value"] is not None:
            wanted["ExposureValue"] = float(opts["exposure_value"])
        return {k: v for k, v in wanted.items() if not supported or k in supported}

    def _grab(self, timeout):
        wait = timeout if timeout is not None else self.options["frame_timeout"]
        try:
            request = self._camera.capture_request(wait=wait)
        except TimeoutError:
            raise HardwareError(Msg("picamera2: no frame within {wait:g} s (camera stalled or "
                                    "disconnected)", wait=wait)) from None
        except RuntimeError as exc:
            raise HardwareError(Msg("picamera2: capture failed: {error}", error=exc)) from None
        try:  # copy the two Y planes out, then hand the buffers back to the camera at once
            gray = self._plane(request, "lores", self.size)
            if self.full_size is None:
                return gray
            return gray, self._plane(request, "main", self.full_size)
        finally:
            request.release()

    def _plane(self, request, stream: str, size) -> np.ndarray:
        """The Y plane of ``stream``, copied out of the request: through a MappedArray
        view only the luma pixels are copied (``make_array`` copies the whole buffer)."""
        if self._mapped is not None:
            with self._mapped(request, stream) as mapped:
                return self.y_plane(mapped.array, size)
        return self.y_plane(request.make_array(stream), size)

    @staticmethod
    def y_plane(buffer, size) -> np.ndarray:
        """A copy of the first ``height`` rows and ``width`` columns (the Y plane
        without row padding) of a YUV420 buffer of shape ``(height * 3 / 2, stride)``."""
        width, height = size
        buffer = np.asarray(buffer)
        if buffer.ndim != 2 or buffer.shape[0] < height or buffer.shape[1] < width:
            want = f"({height * 3 // 2}, >={width})"
            raise HardwareError(Msg("picamera2: buffer has shape {shape}, expected {want} YUV420",
                                    shape=buffer.shape, want=want))
        return np.array(buffer[:height, :width])  # owns its pixels: the buffer goes back

    def _close(self):
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()
        finally:
            camera.close()
