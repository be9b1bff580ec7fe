"""Assembling the running kiosk from its config: ledger, printer, signals, camera.

Each hardware part comes from its owner's factory (``kiosk.printing.from_config``,
``kiosk.hardware.signals.Signals.from_config``, ``kiosk.hardware.scanner.from_config``,
``kiosk.hardware.wedge.KeyboardWedge``) and is handed to the :class:`Controller` by
argument. A part that fails to open is reported to staff, never fatal: the kiosk
can still check and record codes typed on the keypad. A bad config value is not a
hardware failure: its ConfigError stops the start with the key named. Optional
libraries (picamera2, OpenCV) are imported by the camera source that needs them.
"""

import logging
from dataclasses import dataclass, field

from kiosk import context, printing
from kiosk.core import audit
from kiosk.core.store import Store
from kiosk.core.syncstate import read_status
from kiosk.doctor import held
from kiosk.errors import ConfigError
from kiosk.hardware import camera, decoder
from kiosk.hardware import scanner as scanning
from kiosk.hardware.signals import Signals
from kiosk.hardware.wedge import KeyboardWedge
from kiosk.ui import settings as ui_settings
from kiosk.ui.controller import Controller
from kiosk.ui.sounds import Sounds, Together

log = logging.getLogger(__name__)


@dataclass
class Parts:
    controller: Controller
    scanner: scanning.Scanner | None = None
    wedge: KeyboardWedge | None = None
    problems: list = field(default_factory=list)
    closers: list = field(default_factory=list)
    deliver: object = None

    def start(self, deliver) -> None:
        """Start the camera; ``deliver(payload, source)`` must be thread-safe."""
        self.deliver = deliver
        if self.scanner is not None:
            if not self.scanner.source.available:
                self.controller.camera_problem("no camera configured ([camera] source = none)")
            self.scanner.start()

    def camera_alive(self) -> bool:
        """False only when a camera is configured and its scanner died or hangs (the
        UI's watchdog ping depends on it); a replay that simply ended is not a failure."""
        scanner = self.scanner
        if scanner is None or not scanner.source.available:
            return True
        if scanner.error is None and scanner.wait(0) and not scanner.running:
            return True
        return scanner.alive()

    def stop(self) -> None:
        if self.scanner is not None:
            self.scanner.stop()
        for close in self.closers:
            try:
                close()
            except Exception as exc:
                log.warning("closing a part failed: %s", exc)


def _printer(cfg, store, problems) -> printing.PrintService | None:
    try:
        return printing.from_config(cfg, store)
    except ConfigError:
        raise
    except Exception as exc:  # a printer that cannot be opened: staff see it
        problems.append(f"printer: {exc}")
        return None


def _signals(cfg, problems, pin_factory=None) -> Signals | None:
    try:
        gpio = Signals.from_config(cfg.section("gpio"), pin_factory=pin_factory)
    except ConfigError:
        raise
    except Exception as exc:  # GPIO that cannot be opened: staff see it
        problems.append(f"LED/buzzer/button: {exc}")
        return None
    if gpio.problem:
        problems.append(f"LED/buzzer/button: {gpio.problem}")
    return gpio


def build(cfg, *, post, worker=None, print_worker=None, with_camera: bool = True,
          pin_factory=None) -> Parts:
    """All parts for ``cfg``; ``post`` hands work to the UI's main thread.

    ``pin_factory`` goes to gpiozero (tests pass a MockFactory; by default gpiozero
    picks one, e.g. from GPIOZERO_PIN_FACTORY)."""
    from kiosk.ui.worker import Worker

    ledger = context.open_ledger(cfg)
    trail = audit.AuditLog(ledger.store.path, keep=audit.keep_days(cfg))
    problems: list[str] = []
    printer = _printer(cfg, ledger.store, problems)
    gpio = _signals(cfg, problems, pin_factory)
    settings = ui_settings.from_config(cfg)
    sounds = Sounds(volume=settings.sound_volume, mute=settings.mute)  # the screen's own speaker
    controller = Controller(
        ledger, settings=settings, printer=printer, signals=Together(gpio, sounds),
        worker=worker or Worker(post, "kiosk-db"),
        print_worker=print_worker or Worker(post, "kiosk-print"), post=post,
        status_reader=read_status, diagnostics=lambda lang=None: held.in_ui(cfg, signals=gpio, printer=printer, lang=lang),
        checker=context.open_ledger(cfg, store=Store(ledger.store.path)), audit=trail)
    parts = Parts(controller, problems=problems)
    if gpio is not None:
        gpio.on_confirm = lambda: post(controller.button_pressed)
        parts.closers.append(gpio.close)
    if printer is not None:
        parts.closers.append(printer.close)
        controller.status.update(printer="ready")
    if with_camera:
        _camera(cfg, parts, post)
    parts.wedge = KeyboardWedge(
        lambda ev: post(lambda: controller.scan(ev.payload, ev.source)),
        max_gap=controller.settings.scanner_key_gap)
    parts.closers += [controller.checker.store.close, trail.close]
    controller.status["problems"] = problems
    for problem in problems:
        log.warning("%s", problem)
    return parts


def _camera(cfg, parts: Parts, post) -> None:
    controller = parts.controller

    def on_event(event):
        controller_scan = parts.deliver or (lambda p, s: post(lambda: controller.scan(p, s)))
        controller_scan(event.payload, event.source)

    def on_error(exc):
        post(lambda: controller.camera_problem(str(exc)))

    def on_recover():  # the camera was reopened after a failure
        post(controller.camera_ok)

    try:
        parts.scanner = scanning.from_config(cfg, on_event, on_error=on_error, on_recover=on_recover)
    except ConfigError:
        raise
    except Exception as exc:  # no camera: codes can still be typed
        controller.camera_problem(str(exc))


def setup_scanner(spec: str, controller, post):
    """A scanner on camera ``spec`` for the not-provisioned screen (None if unavailable)."""
    try:
        source = camera.open_source(spec)
        return scanning.Scanner(
            source, decoder.make_decoder("auto"),
            lambda ev: post(lambda: controller.scan(ev.payload, "camera")),
            on_error=lambda exc: post(lambda: controller.camera_problem(str(exc))))
    except Exception as exc:  # no camera yet: the USB scanner (keyboard wedge) still works
        log.warning("setup camera %s: %s", spec, exc)
        return None
