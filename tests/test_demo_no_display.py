"""`kiosk demo` on a machine without a display says so and how to go on, at once,
instead of waiting for a window that can never appear."""

import os
import subprocess
import sys


def test_demo_without_a_display_explains_and_exits(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    run = subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", "--dir", str(tmp_path / "d")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "no display" in run.stderr and "xvfb-run" in run.stderr
    assert not (tmp_path / "d").exists()  # nothing half made
