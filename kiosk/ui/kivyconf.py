"""Kivy set-up that must happen before Kivy's window exists.

:func:`configure_kivy` points KIVY_HOME at a writable folder (the Pi's root file
system is read-only, so never ~/.kivy), turns off Kivy's own argument parser, sets
the window size, full screen and rotation, and makes Noto Sans the default font.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FONT_REGULAR = ASSETS / "fonts" / "NotoSans-Regular.ttf"
FONT_BOLD = ASSETS / "fonts" / "NotoSans-Bold.ttf"


def configure_kivy(*, width: int = 800, height: int = 480, fullscreen: bool = False,
                   rotation: int = 0, home: Path | None = None, verbose: bool = False) -> None:
    """Environment and Config for Kivy; must run before ``kivy.core.window`` is imported."""
    os.environ["KIVY_NO_ARGS"] = "1"
    if home is not None:
        os.environ.setdefault("KIVY_HOME", str(home))
        Path(os.environ["KIVY_HOME"]).mkdir(parents=True, exist_ok=True)
    # Kivy logs through Python's logging (no handlers of its own on the root logger).
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    logging.getLogger("kivy").setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
        os.environ.setdefault("KIVY_NO_FILELOG", "1")
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("graphics", "rotation", str(rotation))
    Config.set("graphics", "show_cursor", "0" if fullscreen else "1")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "log_level", "info" if verbose else "warning")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    logging.getLogger("kivy").setLevel(logging.INFO if verbose else logging.ERROR)
    register_fonts()


def register_fonts() -> None:
    """Noto Sans replaces Roboto (Kivy's default font name), so every label uses it."""
    from kivy.core.text import LabelBase

    regular, bold = str(FONT_REGULAR), str(FONT_BOLD)
    LabelBase.register(name="Roboto", fn_regular=regular, fn_bold=bold,
                       fn_italic=regular, fn_bolditalic=bold)


def post(fn: Callable[[], None]) -> None:
    """Run ``fn`` on Kivy's main thread at the next frame (safe from any thread)."""
    from kivy.clock import Clock

    Clock.schedule_once(lambda _dt: fn(), 0)
