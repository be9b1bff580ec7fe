"""What the screens show: the kiosk's screen state, and the means to change it.

:class:`ScreenState` holds everything a screen reads (which screen, the verdict, the
PIN typed so far, the status line ...) and the devices and workers the parts use.
The parts that change it (:mod:`kiosk.ui.flow`, :mod:`kiosk.ui.staff`,
:mod:`kiosk.ui.receipts`, :mod:`kiosk.ui.status`) call ``changed()`` afterwards,
and the app redraws; :class:`kiosk.ui.controller.Controller` is this state with
the public methods that screens call.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kiosk.ui.devices import Printer, Signals
from kiosk.ui.i18n import LANGUAGES
from kiosk.ui.names import IDLE, NOT_PROVISIONED, STAFF_SCREENS
from kiosk.ui.present import verdict_view
from kiosk.ui.settings import UiSettings
from kiosk.ui.worker import InlineWorker

log = logging.getLogger(__name__)


class ScreenState:
    """The screen, what it shows, and the ledger, devices and workers behind it."""

    def __init__(self, ledger=None, *, settings: UiSettings | None = None,
                 printer: Printer | None = None, signals: Signals | None = None, worker=None,
                 print_worker=None, post: Callable[[Callable[[], None]], None] | None = None,
                 now: Callable[[], float] = time.monotonic,
                 diagnostics: Callable[..., list] | None = None, problem: str = "", checker=None,
                 setup=None, audit=None):
        self.ledger, self.printer, self.signals = ledger, printer, signals
        self.checker = checker  # a Ledger on its own read connection, for checks in place
        self.settings = settings or UiSettings()
        self.worker = worker or InlineWorker()
        self.print_worker = print_worker or self.worker
        self.post = post or (lambda fn: fn())
        self.now = now
        self.diagnostics = diagnostics  # (lang=) -> the doctor's checks (kiosk.doctor.held.in_ui)
        self.problem = problem
        self.setup = setup          # not provisioned: submit a scanned setup QR (kiosk.provision)
        self.setup_message = ""
        self.audit = audit          # kiosk.core.audit.AuditLog, or None
        self.listeners: list[Callable[[ScreenState], None]] = []
        self.default_lang = self.settings.language if self.settings.language in LANGUAGES else "en"
        self.lang = self.default_lang
        self.screen = NOT_PROVISIONED if ledger is None else IDLE
        self.deadline: float | None = None
        self.lang_deadline: float | None = None
        # the customer (kiosk.ui.flow)
        self.result = None          # the Result on the verdict screen
        self.token = 0              # changes whenever a new verdict is shown
        self.confirming = False
        self.origin = ""            # where the verdict's code came from: camera, keyboard, keypad
        self.waiting: tuple[str, str] | None = None  # a held newcomer: (payload, source)
        self.warning = 0            # seconds left on a ready verdict about to time out (0: none)
        self.guard_until = 0.0      # taps on the current screen count from this time on
        self.done_at = 0.0          # when Done appeared
        self.again = False          # Done shows "Redeemed just now here"
        self.record_error = ""      # staff-facing text when a confirm could not be recorded
        self.redeemed = None        # the Result of the last confirm, for the Done screen
        self.scans_seen, self.verdicts_shown = 0, 0
        # receipts (kiosk.ui.receipts) and the status line (kiosk.ui.status)
        self.print_state, self.print_message = "", ""
        self.status: dict = {"camera": "ok", "camera_message": "", "printer": "", "printer_message": ""}
        # staff (kiosk.ui.staff)
        self.pin_text, self.pin_message, self.pin_tries, self.locked_until = "", "", 0, 0.0
        self.code_text, self.staff_message, self.page_data = "", "", None
        self.undo_asking = False    # the Undo page asks "are you sure?"

    # -- for the parts: tell the screens, change screen, signal, audit ----------------
    def changed(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def go(self, screen: str, timeout: float | None) -> None:
        self.screen = screen
        self.deadline = None if timeout is None else self.now() + timeout
        self.changed()

    def signal(self, kind: str) -> None:
        if self.signals is not None:
            try:
                self.signals.show(kind)
            except Exception as exc:  # a dead LED must never stop a redemption
                log.warning("signals.show(%s) failed: %s", kind, exc)

    def record_audit(self, kind: str, result=None, **fields) -> None:
        if self.audit is not None:
            try:
                self.audit.record(kind, result, **fields)
            except Exception as exc:  # the audit trail must never stop a redemption
                log.warning("audit %s failed: %s", kind, exc)

    @property
    def guarded(self) -> bool:
        """True while taps on the screen just shown are ignored (see ``TAP_GUARD``)."""
        return self.now() < self.guard_until

    @property
    def provisioned(self) -> bool:
        return self.ledger is not None

    def view(self):
        """The verdict screen's texts for the current result and language."""
        if self.result is None:
            return None
        return verdict_view(self.result, self.lang, this_device=self.this_device,
                            now=datetime.now(UTC), device_name=self.settings.device_name)

    @property
    def this_device(self) -> str:
        return self.ledger.identity.device if self.ledger is not None else ""

    # -- time and the way back -------------------------------------------------
    def activity(self) -> None:
        """A touch anywhere: staff screens and the chosen language stay a while longer."""
        if self.screen in STAFF_SCREENS:
            self.deadline = self.now() + self.settings.staff_timeout
        if self.lang != self.default_lang and self.screen == IDLE:
            self.lang_deadline = self.now() + self.settings.language_timeout

    def reset_customer(self) -> None:
        self.result, self.redeemed, self.confirming, self.record_error = None, None, False, ""
        self.origin, self.warning, self.again, self.guard_until = "", 0, False, 0.0
        self.lang = self.default_lang

    def go_idle(self) -> None:
        """Back to the attract screen; the next customer starts in the default language."""
        self.reset_customer()
        self.waiting = None
        self.pin_text = self.code_text = self.staff_message = ""
        self.page_data, self.lang_deadline = None, None
        self.signal("idle")
        self.go(IDLE if self.provisioned else NOT_PROVISIONED, None)
