"""Assembling the running kiosk from its config: ledger, printer, signals, camera.

Each hardware part comes from its owner's factory (``kiosk.printing.from_config``,
``kiosk.hardware.signals.Signals.from_config``, ``kiosk.hardware.scanner.from_config``,
``kiosk.hardware.wedge.KeyboardWedge``) and is handed to the :class:`Controller` by
argument. A part whose module is not installed is left out (the screen says so in
Diagnostics); a part that fails to open is reported to staff, never fatal: the
kiosk can still check and record codes typed on the keypad.
"""

import importlib
import logging
from dataclasses import dataclass, field

from kiosk import context
from kiosk.core import audit
from kiosk.core.store import Store
from kiosk.ui import settings as ui_settings
from kiosk.ui.controller import Controller
from kiosk.ui.sounds import Sounds, Together

log = logging.getLogger(__name__)


def optional(module: str):
    """``module`` if it is installed, else None (other import errors still raise)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


@dataclass
class Parts:
    controller: Controller
    scanner: object = None
    wedge: object = None
    problems: list = field(default_factory=list)
    closers: list = field(default_factory=list)
    deliver: object = None

    def start(self, deliver) -> None:
        """Start the camera; ``deliver(payload, source)`` must be thread-safe."""
        self.deliver = deliver
        if self.scanner is not None:
            if not getattr(self.scanner.source, "available", True):
                self.controller.camera_problem("no camera configured ([camera] source = none)")
            self.scanner.start()

    def camera_alive(self) -> bool:
        """False only when a camera is configured and its scanner died or hangs (the
        UI's watchdog ping depends on it); a replay that simply ended is not a failure."""
        scanner = self.scanner
        if scanner is None or not getattr(scanner.source, "available", True):
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


def _printer(cfg, store, problems):
    printing = optional("kiosk.printing")
    if printing is None:
        problems.append("printing module not installed")
        return None
    try:
        return printing.from_config(cfg, store)
    except Exception as exc:
        if type(exc).__name__ == "ConfigError":
            raise
        problems.append(f"printer: {exc}")
        return None


def _signals(cfg, problems, pin_factory=None):
    mod = optional("kiosk.hardware.signals")
    if mod is None:
        return None
    try:
        signals = mod.Signals.from_config(cfg.section("gpio"), pin_factory=pin_factory)
    except Exception as exc:
        if type(exc).__name__ == "ConfigError":
            raise
        problems.append(f"LED/buzzer/button: {exc}")
        return None
    if signals.problem:
        problems.append(f"LED/buzzer/button: {signals.problem}")
    return signals


def _status_reader():
    from kiosk.core.syncstate import read_status
    return read_status


def _diagnostics(cfg):
    doctor = optional("kiosk.doctor")
    if doctor is None:
        return None
    # The UI already holds the camera, the printer and the GPIO pins: its own lines
    # (camera, printer, LED/buzzer/button) replace those checks.
    return lambda: doctor.run_checks(cfg, skip={"camera_and_decode", "gpio"},
                                     probe_printer=False)


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
    signals = _signals(cfg, problems, pin_factory)
    settings = ui_settings.from_config(cfg)
    sounds = Sounds(volume=settings.sound_volume, mute=settings.mute)  # the screen's own speaker
    controller = Controller(
        ledger, settings=settings, printer=printer, signals=Together(signals, sounds),
        worker=worker or Worker(post, "kiosk-db"),
        print_worker=print_worker or Worker(post, "kiosk-print"), post=post,
        status_reader=_status_reader(), diagnostics=_diagnostics(cfg),
        checker=context.open_ledger(cfg, store=Store(ledger.store.path)), audit=trail)
    parts = Parts(controller, problems=problems)
    if signals is not None:
        signals.on_confirm = lambda: post(controller.button_pressed)
        parts.closers.append(signals.close)
    if printer is not None and hasattr(printer, "close"):
        parts.closers.append(printer.close)
    if printer is not None:
        controller.status.update(printer="ready")
    if with_camera:
        _camera(cfg, parts, post)
    wedge_mod = optional("kiosk.hardware.wedge")
    if wedge_mod is not None:
        parts.wedge = wedge_mod.KeyboardWedge(
            lambda ev: post(lambda: controller.scan(ev.payload, ev.source)),
            max_gap=controller.settings.scanner_key_gap)
    parts.closers += [controller.checker.store.close, trail.close]
    controller.status["problems"] = problems
    for problem in problems:
        log.warning("%s", problem)
    return parts


def _camera(cfg, parts: Parts, post) -> None:
    scanner_mod = optional("kiosk.hardware.scanner")
    controller = parts.controller
    if scanner_mod is None:
        controller.camera_problem("scanning module not installed")
        return

    def on_event(event):
        controller_scan = parts.deliver or (lambda p, s: post(lambda: controller.scan(p, s)))
        controller_scan(event.payload, getattr(event, "source", "camera"))

    def on_error(exc):
        post(lambda: controller.camera_problem(str(exc)))

    def on_recover():  # the camera was reopened after a failure
        post(controller.camera_ok)

    try:
        parts.scanner = scanner_mod.from_config(cfg, on_event, on_error=on_error,
                                                on_recover=on_recover)
    except Exception as exc:
        if type(exc).__name__ == "ConfigError":
            raise
        controller.camera_problem(str(exc))


def setup_scanner(spec: str, controller, post):
    """A scanner on camera ``spec`` for the not-provisioned screen (None if unavailable)."""
    camera = optional("kiosk.hardware.camera")
    scanner_mod = optional("kiosk.hardware.scanner")
    decoder = optional("kiosk.hardware.decoder")
    if camera is None or scanner_mod is None or decoder is None:
        return None
    try:
        source = camera.open_source(spec)
        return scanner_mod.Scanner(
            source, decoder.make_decoder("auto"),
            lambda ev: post(lambda: controller.scan(ev.payload, "camera")),
            on_error=lambda exc: post(lambda: controller.camera_problem(str(exc))))
    except Exception as exc:  # no camera yet: the USB scanner (keyboard wedge) still works
        log.warning("setup camera %s: %s", spec, exc)
        return None
