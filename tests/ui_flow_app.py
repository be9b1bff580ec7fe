"""The real kiosk app in its own process, for scenario tests driven from outside.

    python tests/ui_flow_app.py CONFIG PROBE CAMERA_FILE

runs the UI like ``kiosk ui`` (parts from CONFIG: real ledger, printer, mock GPIO,
keyboard wedge) with one difference: the camera is a file. While CAMERA_FILE exists
the camera sees that image (a customer holding a card), otherwise an empty counter;
frames go through the real decoder and Scanner thread. Every 50 ms the app writes
PROBE (JSON, replaced atomically): the screen, the screens seen so far, and every
widget with an id on the current screen with its rectangle in X window coordinates
(origin top left), so the test can click it with xdotool like a person would.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiosk import config  # noqa: E402
from kiosk.hardware.camera.base import FrameSource  # noqa: E402


class FileCamera(FrameSource):
    """Sees the image at ``path`` while it exists, else a grey counter; 15 frames a second."""

    def __init__(self, path: Path):
        super().__init__(f"file:{path}")
        self.path = path
        self._empty = np.full((480, 640), 70, dtype=np.uint8)
        self._cache: tuple[float, np.ndarray] | None = None

    def _open(self) -> None:
        pass

    def _grab(self, timeout):
        time.sleep(1 / 15)
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self._empty
        if self._cache is None or self._cache[0] != mtime:
            with Image.open(self.path) as image:
                self._cache = (mtime, np.asarray(image.convert("L")))
        return self._cache[1]

    def _close(self) -> None:
        pass


def main(config_path: str, probe_path: str, camera_file: str) -> int:
    from kiosk.ui.kivyconf import configure_kivy, post

    cfg = config.load(Path(config_path))
    configure_kivy(width=800, height=480, home=Path(tempfile.mkdtemp(prefix="kiosk-flow-kivy-")))
    from kivy.clock import Clock
    from kivy.core.window import Window

    from kiosk.hardware.decoder import make_decoder
    from kiosk.hardware.scanner import Scanner
    from kiosk.ui import parts as kparts
    from kiosk.ui.app import KioskApp

    parts = kparts.build(cfg, post=post, with_camera=False)
    scanned = []  # the payloads handed to the controller, for the probe
    scan = parts.controller.scan
    parts.controller.scan = lambda payload, source="camera": (scanned.append(payload),
                                                              scan(payload, source))[1]
    probe, seen = Path(probe_path), []

    def write_probe(_dt):
        app = App.get_running_app()
        if app is None or app.sm is None:
            return
        screen = app.sm.current_screen
        if not seen or seen[-1][1] != screen.name:
            seen.append((time.monotonic(), screen.name))
        height = Window.height
        widgets = {}

        def add(name, widget):
            x, y = widget.to_window(widget.x, widget.y)
            widgets[name] = {"rect": [x, height - y - widget.height, widget.width, widget.height],
                             "visible": widget.opacity > 0 and widget.width > 2,
                             "disabled": bool(widget.disabled),
                             "text": str(getattr(widget, "text", ""))}
        for wid, widget in screen.ids.items():
            if hasattr(widget, "to_window"):
                add(wid, widget)
            for key_button in getattr(widget, "children", []) if hasattr(widget, "keys") else []:
                add(f"{wid}:{key_button.key}", key_button)
        c = parts.controller
        data = {"screen": screen.name, "seen": seen, "widgets": widgets, "pid": os.getpid(),
                "waiting": getattr(c, "waiting", None) is not None,
                "warning": getattr(c, "warning", 0), "scans": c.scans_seen,
                "last_scan": scanned[-1] if scanned else None, "time": time.monotonic()}
        tmp = probe.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(probe)

    from kivy.app import App

    scanner = Scanner(FileCamera(Path(camera_file)), make_decoder("auto"),
                      lambda ev: app.deliver_scan(ev.payload, "camera"))

    def started(_app):
        scanner.start()
        Clock.schedule_interval(write_probe, 0.05)

    def stopped(_app):
        scanner.stop()
        parts.stop()

    app = KioskApp(parts.controller, wedge=parts.wedge, on_start_hooks=[started],
                   on_stop_hooks=[stopped])
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
