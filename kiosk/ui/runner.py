"""Starting the UI: ``kiosk ui`` (the appliance) and ``kiosk demo`` (a laptop).

Reads the config, decides between the normal screens and the not-provisioned
screen (no config file, or no trusted key), configures Kivy before its window
exists, assembles the parts and runs the app until the window closes.
"""

import logging
import os
import tempfile
from pathlib import Path

from kiosk import config as kconfig
from kiosk.errors import ConfigError
from kiosk.i18n import Msg, speaking
from kiosk.ui.settings import UiSettings

log = logging.getLogger(__name__)


def _not_provisioned_problem(path: Path) -> tuple[object | None, str]:
    """(Config or None, technician-facing problem or ""): the text is English, usually a
    :class:`kiosk.i18n.Msg` the not-provisioned screen says in its own language.

    Anything that would make the normal screens fail at start (an unreadable file, a
    data partition that did not mount or is read-only) is a problem shown on the
    not-provisioned screen, never an exception: a crash would restart the UI for ever
    with the screen dark."""
    try:
        cfg = kconfig.load(path)
    except (ConfigError, OSError) as exc:
        return None, getattr(exc, "msg", None) or str(exc)
    if not cfg.trusted_keys:
        return cfg, Msg("{path}: [trust.keys] lists no trusted public key", path=path)
    from kiosk.doctor.data import data_partition

    with speaking(cfg.language):  # the doctor's words are made in the language spoken
        data = data_partition(cfg)
    if data.status == "FAIL":
        return None, data.message
    for warning in cfg.warnings:
        log.warning("config: %s", warning)
    return cfg, ""


def run(config_path: Path, *, size: tuple[int, int] | None = None, fullscreen: bool | None = None,
        verbose: bool = False, demo_settings: dict | None = None,
        exit_after: float | None = None, camera: str | None = None,
        demo_deck: Path | None = None) -> int:
    """Run the kiosk UI until its window closes; returns an exit code."""
    from kiosk.ui import settings as ui_settings

    cfg, problem = _not_provisioned_problem(config_path)
    settings = ui_settings.from_config(cfg) if cfg is not None and not problem else \
        UiSettings(language=kconfig.language_hint(config_path))
    if size:
        settings.width, settings.height = size
    if fullscreen is not None:
        settings.fullscreen = fullscreen
    home = (cfg.data_dir / "kivy") if cfg is not None and not problem else \
        Path(tempfile.gettempdir()) / f"kiosk-kivy-{os.getuid()}"
    from kiosk.ui.kivyconf import configure_kivy, post

    configure_kivy(width=settings.width, height=settings.height, fullscreen=settings.fullscreen,
                   rotation=settings.rotation, home=home, verbose=verbose)
    one_touch_path()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kiosk.ui.app import KioskApp

    if problem:
        log.error("not provisioned: %s", problem)
        return _run_not_provisioned(settings, problem, post, camera or "picamera2")
    from kiosk.ui import parts as kparts

    parts = kparts.build(cfg, post=post)
    parts.controller.settings.extra.update(demo_settings or {})
    hooks = [lambda a: parts.start(a.deliver_scan)]
    stop_hooks = [lambda a: parts.stop()]
    if demo_deck is not None:  # kiosk demo: one card per customer, Space for the next
        from kiosk.ui import demo

        demo.attach_deck(parts, demo_deck, hooks, stop_hooks)
    if exit_after:
        hooks.append(lambda a: _stop_after(a, exit_after))
    app = KioskApp(parts.controller, wedge=parts.wedge, on_start_hooks=hooks,
                   on_stop_hooks=stop_hooks, alive=parts.camera_alive)
    app.run()
    return 0


# Kivy's own evdev reader for touch screens; mtdev reads type B (slotted) multitouch,
# as the Raspberry Pi touch displays report it (Kivy's hidinput reads type A only).
TOUCH_INPUT = "probesysfs,provider=mtdev"


def one_touch_path() -> None:
    """Exactly one input path for a touch screen, whatever Kivy would guess. On KMS/DRM
    (the appliance): Kivy's ``probesysfs`` with ``mtdev`` (``TOUCH_INPUT``). SDL attaches
    no window to evdev touches there, so it makes no mouse events of them, and Kivy's
    SDL window drops SDL's finger events on Linux: without probesysfs a touch screen
    does nothing (the virtual Pi: 0 touches for 4 taps); ``SDL_TOUCH_MOUSE_EVENTS=0``
    keeps an SDL that does make mouse events of touches from doubling every finger.
    Under X11 or Wayland (a laptop) the window system turns touches into SDL's mouse
    events, the one path there. A mouse always comes through SDL (Kivy's ``mouse``).
    Must run before the window exists (input providers are made when the app starts)."""
    from kivy.config import Config

    for key in Config.options("input"):
        if key != "mouse":
            Config.remove_option("input", key)
    if os.environ.get("SDL_VIDEODRIVER") == "kmsdrm":
        Config.set("input", "%(name)s", TOUCH_INPUT)
        os.environ["SDL_TOUCH_MOUSE_EVENTS"] = "0"


def _stop_after(app, seconds: float) -> None:
    """Close the app after ``seconds`` (smoke tests of ``kiosk demo``)."""
    from kivy.clock import Clock

    def stop(_dt):
        c = app.controller
        print(f"demo: {c.scans_seen} scans, {c.verdicts_shown} verdicts, screen {c.screen}")
        app.stop()
    Clock.schedule_once(stop, seconds)


def _run_not_provisioned(settings, problem: str, post, camera: str) -> int:
    """The not-provisioned screen; a setup QR shown to ``camera`` (or typed by a USB
    scanner) is verified and queued by ``kiosk.provision.submit_setup_qr``."""
    from kiosk import provision
    from kiosk.hardware.wedge import KeyboardWedge
    from kiosk.ui import parts as kparts
    from kiosk.ui.app import KioskApp
    from kiosk.ui.controller import Controller
    from kiosk.ui.worker import Worker

    controller = Controller(None, settings=settings, problem=problem,
                            setup=provision.submit_and_wait,
                            worker=Worker(post, "kiosk-setup"), post=post)
    scanner = kparts.setup_scanner(camera, controller, post)
    wedge = KeyboardWedge(lambda ev: post(lambda: controller.scan(ev.payload, ev.source)),
                          max_gap=settings.scanner_key_gap)
    app = KioskApp(controller, wedge=wedge,
                   on_start_hooks=[lambda a: scanner.start()] if scanner else [],
                   on_stop_hooks=[lambda a: scanner.stop()] if scanner else [])
    app.run()
    return 0
