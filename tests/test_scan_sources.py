"""Frame sources: the spec factory, replay of images and videos, OpenCV, and picamera2 against a fake."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiosk.config import Section
from kiosk.errors import ConfigError, HardwareError
from kiosk.hardware.camera import open_source, settings_from_section
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.camera.base import split_spec
from kiosk.hardware.decoder import make_decoder
from kiosk.hardware.scanner import Scanner

cv2 = pytest.importorskip("cv2")  # in the dev extra; video replay and opencv:N need it


def levels(source, n):
    return [int(source.read().gray[0, 0]) for _ in range(n)]


def write_levels(folder: Path, names_levels):
    folder.mkdir(exist_ok=True)
    for name, level in names_levels:
        Image.fromarray(np.full((24, 32), level, np.uint8)).save(folder / name)
    return folder


# --- the factory ---------------------------------------------------------------------

def test_spec_parsing():
    assert split_spec("replay:/data/rec?fps=5&loop=0") == ("replay", "/data/rec", {"fps": "5", "loop": "0"})
    assert split_spec("replay:/data/what?") == ("replay", "/data/what?", {})
    assert split_spec("opencv:0") == ("opencv", "0", {})
    assert split_spec(" PiCamera2 ") == ("picamera2", "", {})


@pytest.mark.parametrize("spec", ["", "camera", "replay:", "opencv:", "picamera2:1", "none:x"])
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError, match="is not one of: picamera2, opencv:N"):
        open_source(spec)


def test_bad_spec_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'speed'"):
        open_source(f"replay:{tmp_path}?speed=2")
    with pytest.raises(ConfigError, match="loop='maybe' is not valid"):
        open_source(f"replay:{tmp_path}?loop=maybe")


def test_camera_section_settings_are_checked():
    section = Section(Path("/etc/kiosk/kiosk.toml"), "camera", {"width": 800, "fps": 15.0})
    settings = settings_from_section(section)
    assert settings["width"] == 800 and settings["height"] == 480 and settings["fps"] == 15.0
    assert settings["autofocus"] == "continuous" and settings["exposure_time"] is None
    with pytest.raises(ConfigError, match=r"kiosk.toml: \[camera\] width: must be int"):
        settings_from_section(Section(Path("kiosk.toml"), "camera", {"width": "wide"}))
    with pytest.raises(ConfigError, match=r"\[camera\] fps: must be greater than 0"):
        settings_from_section(Section(Path("kiosk.toml"), "camera", {"fps": 0}))


# --- replay ----------------------------------------------------------------------------

def test_replay_plays_a_folder_in_name_order_and_loops(tmp_path):
    folder = write_levels(tmp_path / "rec", [("b-02.png", 20), ("a-01.png", 10), ("c-03.png", 30)])
    (folder / "notes.txt").write_text("not an image")
    with open_source(f"replay:{folder}?fps=0") as source:
        assert source.realtime is False
        assert levels(source, 7) == [10, 20, 30, 10, 20, 30, 10]
        frame = source.read()
        assert frame.index == 7 and frame.gray.dtype == np.uint8 and frame.gray.shape == (24, 32)


def test_replay_once_ends_with_none(tmp_path):
    folder = write_levels(tmp_path / "rec", [("1.png", 1), ("2.png", 2)])
    source = open_source(f"replay:{folder}", once=True)
    assert source.realtime is True  # paced at the default 30 fps
    assert levels(source, 2) == [1, 2] and source.read() is None
    source = open_source(f"replay:{folder}?fps=0&loop=0")
    assert levels(source, 2) == [1, 2] and source.read() is None


def test_replay_of_one_image_repeats_it(tmp_path):
    write_levels(tmp_path, [("still.png", 77)])
    source = open_source(f"replay:{tmp_path / 'still.png'}?fps=0")
    assert levels(source, 3) == [77, 77, 77]
    source.stop()
    assert source.read() is None


def test_replay_errors_name_the_problem(tmp_path):
    with pytest.raises(HardwareError, match="does not exist"):
        open_source(f"replay:{tmp_path / 'missing'}").start()
    (tmp_path / "empty").mkdir()
    with pytest.raises(HardwareError, match="holds no images"):
        open_source(f"replay:{tmp_path / 'empty'}").start()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png")
    with pytest.raises(HardwareError, match=r"cannot read image .*0\.png"):
        open_source(f"replay:{tmp_path / 'bad'}").read()


def write_video(path: Path, frames) -> Path:
    h, w = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h), False)
    assert writer.isOpened()
    for gray in frames:
        writer.write(gray)
    writer.release()
    return path


def test_replay_plays_a_video_file_once_or_looped(tmp_path):
    frames = [syn.wallet_card("VIDEO-CODE-1")] * 4 + [syn.blank()] * 2
    video = write_video(tmp_path / "rec.avi", frames)
    source = open_source(f"replay:{video}?fps=0", once=True)
    got = []
    while (frame := source.read()) is not None:
        got.append(frame)
    assert [f.index for f in got] == list(range(6)) and got[0].gray.shape == (480, 640)
    assert [d.text for d in make_decoder().decode(got[0].gray)] == ["VIDEO-CODE-1"]
    looped = open_source(f"replay:{video}?fps=0")
    assert len([looped.read() for _ in range(9)]) == 9 and looped.read() is not None


def test_opencv_source_reads_gray_frames_and_reports_a_dead_stream(tmp_path):
    video = write_video(tmp_path / "cam.avi", [syn.wallet_card("WEBCAM-42")] * 3)
    source = open_source(f"opencv:{video}?frame_timeout=0.05")
    assert source.name == f"opencv:{video}" and source.realtime
    events, errors = [], []
    scanner = Scanner(source, make_decoder(), events.append, on_error=errors.append)
    scanner.start()
    assert scanner.wait(30)
    scanner.stop()
    assert [e.payload for e in events] == ["WEBCAM-42"]
    assert "gave no frame" in str(errors[0])


def test_opencv_source_that_cannot_open_says_so(tmp_path):
    with pytest.raises(HardwareError, match="cannot open the camera"):
        open_source(f"opencv:{tmp_path / 'no-such-device'}").start()


# --- picamera2, against a fake that follows the documented Picamera2 API ---------------

class FakePicamera2:
    """Follows picamera2's documented behaviour for what the kiosk uses: sizes must be
    even, lores may not exceed main and must be YUV420, ``capture_array("lores")``
    returns the YUV420 buffer of shape (h * 3 / 2, stride), ``wait`` a timeout."""

    def __init__(self, images, *, autofocus=True, stride_pad=64, stall_after=None):
        self.images, self.stall_after, self.stride_pad = images, stall_after, stride_pad
        self.camera_controls = {"ExposureTime": (29, 15534385, 20000), "AnalogueGain": (1.0, 16.0, 1.0),
                                "ExposureValue": (-8.0, 8.0, 0.0), "AeEnable": (False, True, True),
                                "FrameDurationLimits": (33333, 120000, 33333)}
        if autofocus:
            self.camera_controls |= {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
        self.config = self.controls = None
        self.started = self.closed = False
        self.captures, self.waits = 0, []

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

    def capture_array(self, name="main", wait=None):
        assert self.started and name == "lores"
        self.waits.append(wait)
        if self.stall_after is not None and self.captures >= self.stall_after:
            raise TimeoutError("timed out")
        w, h = self.config["lores"]["size"]
        stride = w + self.stride_pad
        buffer = np.full((h * 3 // 2, stride), 128, np.uint8)  # U and V planes: neutral
        buffer[:h, w:] = 255  # row padding: must not reach the frame
        image = self.images[self.captures % len(self.images)]
        buffer[:h, :w] = np.asarray(Image.fromarray(image).resize((w, h)))
        self.captures += 1
        return buffer

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


def picamera(fake, **settings):
    return open_source("picamera2", settings, picamera2_factory=lambda: fake)


def test_picamera2_configures_a_lores_yuv_stream_without_preview():
    fake = FakePicamera2([syn.wallet_card("PI-CAM-1")])
    with picamera(fake, width=640, height=480, fps=25) as source:
        assert fake.started
        config = fake.config
        assert config["lores"] == {"format": "YUV420", "size": (640, 480)}
        assert config["main"]["size"] == (640, 480) and config["display"] is None
        assert config["controls"]["FrameDurationLimits"] == (40000, 40000)
        frame = source.read()
        assert frame.gray.shape == (480, 640) and frame.gray.flags["C_CONTIGUOUS"]
        assert frame.gray.max() < 255 or (frame.gray == 255).mean() < 0.5  # no padding columns
        assert [d.text for d in make_decoder().decode(frame.gray)] == ["PI-CAM-1"]
        assert fake.waits == [3.0]  # the frame timeout goes to capture_array(wait=)
    assert fake.closed and not fake.started


def test_picamera2_y_plane_is_the_first_rows_without_stride_padding():
    fake = FakePicamera2([np.tile(np.arange(160, dtype=np.uint8), (120, 1))], stride_pad=32)
    source = picamera(fake, width=160, height=120)
    gray = source.read().gray
    assert gray.shape == (120, 160) and 255 not in gray and 128 not in gray[:, :100]
    source.stop()


def test_picamera2_continuous_autofocus_when_the_camera_has_it():
    fake = FakePicamera2([syn.blank()])
    picamera(fake).start()
    assert fake.controls == {"AfMode": 2}  # libcamera AfModeEnum.Continuous
    plain = FakePicamera2([syn.blank()], autofocus=False)  # e.g. Camera Module 2
    picamera(plain).start()
    assert plain.controls is None


def test_picamera2_exposure_and_manual_focus_from_settings():
    fake = FakePicamera2([syn.blank()])
    picamera(fake, autofocus="manual", lens_position=8.0, exposure_time=8000, analogue_gain=2.5,
             exposure_value=-0.5).start()
    assert fake.controls == {"AfMode": 0, "LensPosition": 8.0, "AeEnable": False,
                             "ExposureTime": 8000, "AnalogueGain": 2.5, "ExposureValue": -0.5}
    with pytest.raises(HardwareError, match="autofocus 'sometimes'"):
        picamera(FakePicamera2([syn.blank()]), autofocus="sometimes")


def test_picamera2_stall_is_a_clear_error_through_the_scanner():
    fake = FakePicamera2([syn.wallet_card("PI-CAM-2")], stall_after=5)
    errors, events = [], []
    scanner = Scanner(picamera(fake, frame_timeout=0.5), make_decoder(), events.append,
                      on_error=errors.append)
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
