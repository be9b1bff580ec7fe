"""The picamera2 source against a small fake that follows picamera2's documented API:
two YUV420 streams, Y planes copied out of a released request, autofocus and exposure
controls, stalls, a camera that is unplugged and comes back."""

import sys
import time

import numpy as np
import pytest
from PIL import Image

from kiosk.errors import HardwareError
from kiosk.hardware.camera import open_source
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.decoder import make_decoder
from kiosk.hardware.scanner import Scanner

# --- picamera2, against a fake that follows the documented Picamera2 API ---------------

class FakeRequest:
    """A completed request: ``make_array(stream)`` copies a stream's buffer; it must be
    released, else the camera runs out of buffers."""

    def __init__(self, camera, buffers):
        self.camera, self.buffers, self.released = camera, buffers, False

    def make_array(self, name):
        assert not self.released
        self.camera.copied[name] = self.camera.copied.get(name, 0) + self.buffers[name].size
        return self.buffers[name].copy()

    def release(self):
        assert not self.released, "released twice"
        self.released = True
        self.camera.outstanding -= 1
        for buffer in self.buffers.values():
            buffer[:] = 7  # the camera reuses the buffer: a frame must not see this


class FakeMappedArray:
    """picamera2's MappedArray: a view of a request's buffer, valid until release."""

    def __init__(self, request, stream):
        self.request, self.stream = request, stream

    def __enter__(self):
        assert not self.request.released
        self.array = self.request.buffers[self.stream]
        return self

    def __exit__(self, *exc):
        self.array = None


class FakePicamera2:
    """Follows picamera2's documented behaviour for what the kiosk uses: sizes must be
    even, lores may not exceed main and must be YUV420, a YUV420 stream's array has
    shape (h * 3 / 2, stride), ``capture_request(wait=)`` returns a request that
    must be released and raises ``TimeoutError`` when no frame comes in time."""

    def __init__(self, images, *, autofocus=True, stride_pad=64, stall_after=None, fail_open=False):
        self.images, self.stall_after, self.stride_pad = images, stall_after, stride_pad
        if fail_open:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_controls = {"ExposureTime": (29, 15534385, 20000), "AnalogueGain": (1.0, 16.0, 1.0),
                                "ExposureValue": (-8.0, 8.0, 0.0), "AeEnable": (False, True, True),
                                "AeMeteringMode": (0, 3, 0), "AeConstraintMode": (0, 3, 0),
                                "FrameDurationLimits": (33333, 120000, 33333)}
        if autofocus:
            self.camera_controls |= {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0),
                                     "AfRange": (0, 2, 0), "AfSpeed": (0, 1, 0)}
        self.config = self.controls = None
        self.started = self.closed = False
        self.captures, self.waits, self.outstanding, self.copied = 0, [], 0, {}

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None,
                                   colour_space=None, buffer_count=6, controls=None, display="main",
                                   encode="main", queue=True, sensor=None, use_case="video"):
        main = {"format": "XBGR8888", "size": (1280, 720)} | (main or {})
        config = {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue,
                  "controls": controls or {}, "display": display, "encode": encode,
                  "lores": None if lores is None else {"format": "YUV420", "size": main["size"]} | lores}
        for name in (display, encode):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"Display stream {name} was not defined")
        return config

    def configure(self, config):
        assert not self.started, "Camera must be stopped before configuring"
        lores, main = config["lores"], config["main"]
        for stream in (main, lores):
            if stream["size"][0] % 2 or stream["size"][1] % 2:
                raise RuntimeError("width and height should be even")
        if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        if lores["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")
        self.config = config

    def set_controls(self, controls):
        self.controls = dict(controls)

    def start(self, config=None, show_preview=False):
        assert self.config is not None and not show_preview
        self.started = True

    def _buffer(self, stream, image):
        w, h = self.config[stream]["size"]
        stride = w + self.stride_pad
        buffer = np.full((h * 3 // 2, stride), 128, np.uint8)  # U and V planes: neutral
        buffer[:h, w:] = 255  # row padding: must not reach the frame
        buffer[:h, :w] = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BOX))
        return buffer

    def capture_request(self, wait=None, flush=None):
        assert self.started
        self.waits.append(wait)
        if self.stall_after is not None and self.captures >= self.stall_after:
            raise TimeoutError("timed out")
        assert self.outstanding < self.config["buffer_count"], "requests not released"
        image = self.images[self.captures % len(self.images)]
        self.captures += 1
        self.outstanding += 1
        return FakeRequest(self, {"lores": self._buffer("lores", image), "main": self._buffer("main", image)})

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


def picamera(fake, mapped=None, **settings):
    return open_source("picamera2", settings, picamera2_factory=lambda: fake, mapped_array=mapped)


def test_picamera2_configures_lores_and_main_yuv_streams_without_preview():
    fake = FakePicamera2([syn.wallet_card("PI-CAM-1")])
    with picamera(fake, width=640, height=480, fps=25) as source:
        assert fake.started
        config = fake.config
        assert config["lores"] == {"format": "YUV420", "size": (640, 480)}
        assert config["main"] == {"format": "YUV420", "size": (1280, 960)}  # the default full size
        assert config["display"] is None and config["encode"] is None and config["queue"] is False
        assert config["controls"]["FrameDurationLimits"] == (40000, 40000)
        frame = source.read()
        assert frame.gray.shape == (480, 640) and frame.gray.flags["C_CONTIGUOUS"]
        assert frame.full.shape == (960, 1280) and frame.full.flags["C_CONTIGUOUS"]
        for plane in (frame.gray, frame.full):
            assert 255 not in plane and 7 not in plane  # no row padding, not the reused buffer
        assert [d.text for d in make_decoder().decode(frame.gray)] == ["PI-CAM-1"]
        assert [d.text for d in make_decoder().decode(frame.full)] == ["PI-CAM-1"]
        assert fake.waits == [3.0]  # the frame timeout goes to capture_request(wait=)
        assert fake.outstanding == 0  # the request went back to the camera
    assert fake.closed and not fake.started


def test_picamera2_copies_only_the_y_planes_through_a_mapped_array():
    fake = FakePicamera2([syn.wallet_card("PI-CAM-3")], stride_pad=64)
    with picamera(fake, FakeMappedArray, width=320, height=240, full_width=640, full_height=480) as source:
        frame = source.read()
        assert fake.copied == {}  # no make_array: nothing but the Y pixels left the buffers
        assert frame.gray.shape == (240, 320) and frame.full.shape == (480, 640)
        assert 7 not in frame.full and 128 not in frame.full  # a copy, taken before release
        assert frame.full.base is None or frame.full.base.size == frame.full.size
    with picamera(FakePicamera2([syn.blank()]), width=320, height=240, full_width=640,
                  full_height=480) as source:
        source.read()
        assert source._camera.copied == {"lores": 384 * 360, "main": 704 * 720}  # whole buffers


def test_picamera2_lores_only_when_the_full_size_is_not_larger():
    fake = FakePicamera2([syn.blank()])
    with picamera(fake, width=640, height=480, full_width=0, full_height=0) as source:
        assert fake.config["main"]["size"] == (640, 480)
        assert source.read().full is None


def test_picamera2_y_plane_is_the_first_rows_without_stride_padding():
    fake = FakePicamera2([np.tile(np.arange(160, dtype=np.uint8), (120, 1))], stride_pad=32)
    source = picamera(fake, width=160, height=120, full_width=0)
    gray = source.read().gray
    assert gray.shape == (120, 160) and 255 not in gray and 128 not in gray[:, :100]
    source.stop()


def test_picamera2_focus_near_and_meter_for_a_bright_screen_when_the_camera_can():
    fake = FakePicamera2([syn.blank()])
    picamera(fake).start()
    # libcamera: AfModeContinuous, AfRangeMacro, AfSpeedFast, MeteringCentreWeighted, ConstraintHighlight
    assert fake.controls == {"AfMode": 2, "AfRange": 1, "AfSpeed": 1, "AeMeteringMode": 0,
                             "AeConstraintMode": 1}
    plain = FakePicamera2([syn.blank()], autofocus=False)  # e.g. Camera Module 2: no AF controls
    picamera(plain, metering="spot").start()
    assert plain.controls == {"AeMeteringMode": 1, "AeConstraintMode": 1}


def test_picamera2_exposure_and_manual_focus_from_settings():
    fake = FakePicamera2([syn.blank()])
    picamera(fake, autofocus="manual", lens_position=8.0, exposure_time=8000, analogue_gain=2.5,
             exposure_value=-0.5).start()
    assert fake.controls == {"AfMode": 0, "LensPosition": 8.0, "AeEnable": False,
                             "ExposureTime": 8000, "AnalogueGain": 2.5, "ExposureValue": -0.5}
    with pytest.raises(HardwareError, match="autofocus 'sometimes'"):
        picamera(FakePicamera2([syn.blank()]), autofocus="sometimes")
    with pytest.raises(HardwareError, match="af_range 'near' is not one of normal, macro, full"):
        picamera(FakePicamera2([syn.blank()]), af_range="near")


def test_picamera2_stall_is_a_clear_error_through_the_scanner():
    fake = FakePicamera2([syn.wallet_card("PI-CAM-2")], stall_after=5)
    errors, events = [], []
    scanner = Scanner(picamera(fake, frame_timeout=0.5), make_decoder(), events.append,
                      on_error=errors.append, reopen=False)
    scanner.start()
    assert scanner.wait(30)
    scanner.stop()
    assert [e.payload for e in events] == ["PI-CAM-2"]
    assert "picamera2: no frame within 0.5 s" in str(errors[0])
    assert fake.closed


def test_picamera2_missing_or_broken_gives_install_hints(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(HardwareError, match="apt install python3-picamera2.*--system-site-packages"):
        open_source("picamera2").start()

    def no_camera():
        raise RuntimeError("Camera __init__ sequence did not complete.")

    with pytest.raises(HardwareError, match="no camera found"):
        open_source("picamera2", picamera2_factory=no_camera).start()


def test_picamera2_unplugged_and_plugged_back_is_reopened_by_the_scanner():
    first = FakePicamera2([syn.wallet_card("PI-CAM-4")], stall_after=3)  # then the cable is pulled
    cameras = [first]

    def factory():
        if len(cameras) < 3:  # two attempts find no camera
            cameras.append(None)
            raise RuntimeError("Camera __init__ sequence did not complete.")
        cameras.append(FakePicamera2([syn.wallet_card("PI-CAM-5")]))
        return cameras[-1]

    opened = iter([first])
    source = open_source("picamera2", {"frame_timeout": 0.2},
                         picamera2_factory=lambda: next(opened, None) or factory())
    events, errors = [], []
    scanner = Scanner(source, make_decoder(), events.append, on_error=errors.append,
                      reopen_delays=(0.01, 0.02))
    scanner.start()
    try:
        for _ in range(500):  # bounded: 5 s
            if len(events) == 2:
                break
            time.sleep(0.01)
    finally:
        scanner.stop()
    assert [e.payload for e in events] == ["PI-CAM-4", "PI-CAM-5"]
    assert len(errors) == 1 and "no frame within 0.2 s" in str(errors[0])
    assert first.closed and cameras[-1].closed and len(cameras) == 4
