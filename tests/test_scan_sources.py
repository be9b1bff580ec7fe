"""Frame sources: the spec factory, replay of images and videos, OpenCV (picamera2: test_scan_picamera2.py)."""

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
    assert source.reopenable  # a webcam may come back; here: report and stop
    scanner = Scanner(source, make_decoder(), events.append, on_error=errors.append, reopen=False)
    scanner.start()
    assert scanner.wait(30)
    scanner.stop()
    assert [e.payload for e in events] == ["WEBCAM-42"]
    assert "gave no frame" in str(errors[0])


def test_opencv_source_that_cannot_open_says_so(tmp_path):
    with pytest.raises(HardwareError, match="cannot open the camera"):
        open_source(f"opencv:{tmp_path / 'no-such-device'}").start()


def test_replay_of_a_large_recording_streams_lores_and_full_like_the_pi_camera(tmp_path):
    card = syn.wallet_card("REPLAY-FULL-1", size=(1600, 1200))
    Image.fromarray(card).save(tmp_path / "big.png")
    with open_source(f"replay:{tmp_path}?fps=0") as source:
        frame = source.read()
    assert frame.gray.shape == (480, 640) and frame.full.shape == (960, 1280)
    assert [d.text for d in make_decoder().decode(frame.full)] == ["REPLAY-FULL-1"]
    # the scanner hands the full frame to the auto decoder's closer look
    events = []
    Scanner(open_source(f"replay:{tmp_path}?fps=0", once=True), make_decoder(), events.append).run()
    assert [e.payload for e in events] == ["REPLAY-FULL-1"]
    with open_source(f"replay:{tmp_path}?fps=0&full_width=0") as source:
        frame = source.read()
    assert frame.gray.shape == (480, 640) and frame.full is None  # lores only
    with open_source(f"replay:{tmp_path}?fps=0&width=320&height=240") as source:
        frame = source.read()
    assert frame.gray.shape == (240, 320) and frame.full.shape == (960, 1280)
    Image.fromarray(syn.wallet_card("SMALL", size=(640, 480))).save(tmp_path / "big.png")
    with open_source(f"replay:{tmp_path}?fps=0") as source:
        frame = source.read()
    assert frame.gray.shape == (480, 640) and frame.full is None  # fits: played as it is
