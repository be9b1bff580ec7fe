"""The UI's watchdog ping depends on the camera's scanner being alive (issue 13).

systemd restarts the kiosk when the pings stop; the UI pings from its clock only while
``Parts.camera_alive()`` holds: no camera configured, a scanner that runs or is busy
reopening a failed camera, or a replay that simply ended. A scanner that died for good
or hangs inside the camera driver stops the pings.
"""

import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kiosk.hardware.camera import open_source
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.camera.base import FrameSource
from kiosk.hardware.decoder import make_decoder
from kiosk.hardware.scanner import Scanner
from kiosk.ui.parts import Parts

CARD = syn.wallet_card("WATCHDOG-1")


class Camera(FrameSource):
    """Gives ``good`` frames, then fails; ``reopenable`` as asked; can hang in a read."""

    def __init__(self, good=3, reopenable=False, hang=None):
        super().__init__("test-cam")
        self.good, self.reopenable, self.hang = good, reopenable, hang
        self.failed = threading.Event()

    def _grab(self, timeout):
        if self.hang is not None and self.good <= 0:
            self.hang.wait(30)
        if self.good <= 0:
            self.failed.set()
            raise OSError("VIDIOC_DQBUF: No such device")
        self.good -= 1
        return CARD


def parts_with(source, **options) -> Parts:
    scanner = Scanner(source, make_decoder(), lambda e: None, on_error=lambda e: None, **options)
    return Parts(controller=None, scanner=scanner)


def test_no_camera_configured_never_holds_the_ping():
    assert Parts(controller=None).camera_alive()
    parts = parts_with(open_source("none"))
    parts.scanner.start()
    assert parts.camera_alive()


def test_a_scanner_that_died_for_good_stops_the_ping():
    parts = parts_with(Camera(reopenable=False))
    parts.scanner.start()
    assert parts.scanner.wait(30)
    assert not parts.camera_alive()
    parts.stop()


def test_a_scanner_reopening_a_failed_camera_keeps_the_ping():
    camera = Camera(reopenable=True)
    parts = parts_with(camera, reopen_delays=(0.05,))
    parts.scanner.start()
    try:
        assert camera.failed.wait(30)
        time.sleep(0.1)
        assert parts.scanner.running and parts.camera_alive()
    finally:
        parts.stop()
    assert not parts.camera_alive()  # stopped: no longer scanning


def test_a_scanner_hanging_in_the_driver_stops_the_ping():
    release = threading.Event()
    parts = parts_with(Camera(good=1, hang=release), frame_timeout=0.01, reopen_delays=(0.01,))
    parts.scanner.start()
    try:
        for _ in range(200):  # bounded: 2 s
            if parts.scanner.stats.frames_read:
                break
            time.sleep(0.01)
        assert parts.camera_alive()
        parts.scanner._progress_at -= 60  # as if the read had hung for a minute
        assert not parts.camera_alive()
    finally:
        release.set()
        parts.stop()


def test_a_replay_that_ended_is_not_a_failure(tmp_path):
    syn.write_frames(tmp_path, [CARD] * 2)
    parts = parts_with(open_source(f"replay:{tmp_path}?fps=0", once=True))
    parts.scanner.start()
    assert parts.scanner.wait(30)
    time.sleep(0.05)
    assert parts.camera_alive()


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (xvfb-run)")
def test_the_ui_pings_only_while_the_camera_is_alive():
    from kiosk.ui.kivyconf import configure_kivy

    configure_kivy(width=800, height=480, home=Path(tempfile.mkdtemp(prefix="kiosk-test-kivy-")))
    from kiosk.ui.app import KioskApp

    pings, state = [], {"alive": True}
    app = SimpleNamespace(watchdog=SimpleNamespace(ping=lambda: pings.append(1) or True),
                          alive=lambda: state["alive"])
    assert KioskApp.ping_watchdog(app) is True and pings == [1]
    state["alive"] = False
    assert KioskApp.ping_watchdog(app) is False and pings == [1]
    app.alive = None  # no camera part at all: always ping
    assert KioskApp.ping_watchdog(app) is True and pings == [1, 1]
