"""The kiosk's state machine: what is on screen and what a tap or a scan does.

Screens read the state kept here and call only the public methods; each method hands
the work to the part that does it: :mod:`kiosk.ui.flow` (the customer: scan, verdict,
Confirm, Done), :mod:`kiosk.ui.staff` (PIN, staff menu and pages),
:mod:`kiosk.ui.receipts` (printing) and :mod:`kiosk.ui.status` (the status line).
They call the ledger, the receipt printer and the signals (LED/buzzer) the
controller was given (:mod:`kiosk.ui.devices`), so tests pass real fakes.
Every write to SQLite (confirm, undo) and every page load runs on ``worker`` (one
thread, in order) and printing on ``print_worker``; both report back through
``post`` on the main thread. Checking a scan is a read: with ``checker`` (a Ledger
on its own connection) it runs in place, so the verdict is drawn in the same frame.

Rules staff can rely on (docs/ui.md):

* Confirm records at most one redemption per verdict, and only for the verdict the
  finger touched down on (the screen's token at touch-down): the first tap (or button
  press) starts it, every further tap is ignored until the verdict is replaced.
* A pending customer is never replaced without a staff action: while a ready verdict
  waits for Confirm, while a confirm runs and
  for ``TAP_GUARD`` seconds after Done appears, a different code is held ("next
  customer waiting") and shown once the current one is confirmed, cancelled or timed
  out. A refusal may be replaced by the next scan (nothing to confirm there).
* Taps on Done, and on a verdict that appeared because staff finished the one before,
  are ignored for ``TAP_GUARD`` seconds (the second tap of a double tap).
* A ready verdict warns ``warn_seconds`` before it times out (flash and the ``ready``
  signal); at the timeout it is recorded as unconfirmed in the audit trail and shown
  in today's history, or confirmed by itself with ``[ui] auto_confirm``.
* The same card again shortly after its redemption here shows "Redeemed just now
  here" in the Done style, not a red refusal.
* Scans are ignored while the staff menu is open (staff type codes there) and while a
  typed code's verdict or Done is shown; afterwards staff return to the keypad.
* Every screen except Idle times out back to Idle; leaving a customer's screens
  returns the kiosk to the default language.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kiosk.errors import KioskError
from kiosk.ui.devices import Printer, Signals
from kiosk.ui.flow import DONE_HOLD, RECENT_WINDOW, TAP_GUARD, WARN_SECONDS, CustomerFlow
from kiosk.ui.i18n import LANGUAGES, N_, next_language, tr
from kiosk.ui.names import (
    DIAGNOSTICS,
    DONE,
    HISTORY,
    IDLE,
    KEYPAD,
    NOT_PROVISIONED,
    PIN,
    STAFF,
    STAFF_SCREENS,
    SYNC,
    UNDO,
    VERDICT,
)
from kiosk.ui.present import verdict_view
from kiosk.ui.receipts import Receipts
from kiosk.ui.settings import UiSettings
from kiosk.ui.staff import StaffSession
from kiosk.ui.status import STATUS_EVERY, StatusLine
from kiosk.ui.worker import InlineWorker

__all__ = ["Controller", "IDLE", "VERDICT", "DONE", "PIN", "STAFF", "KEYPAD", "UNDO", "HISTORY",
           "SYNC", "DIAGNOSTICS", "NOT_PROVISIONED", "STAFF_SCREENS", "STATUS_EVERY", "TAP_GUARD",
           "DONE_HOLD", "RECENT_WINDOW", "WARN_SECONDS"]

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, ledger=None, *, settings: UiSettings | None = None,
                 printer: Printer | None = None, signals: Signals | None = None, worker=None,
                 print_worker=None, post: Callable[[Callable[[], None]], None] | None = None,
                 now: Callable[[], float] = time.monotonic, status_reader=None,
                 diagnostics: Callable[[], list] | None = None, problem: str = "", checker=None,
                 setup=None, audit=None):
        self.ledger, self.printer, self.signals = ledger, printer, signals
        self.checker = checker  # a Ledger on its own read connection, for checks in place
        self.settings = settings or UiSettings()
        self.worker = worker or InlineWorker()
        self.print_worker = print_worker or self.worker
        self.post = post or (lambda fn: fn())
        self.now = now
        self.diagnostics = diagnostics  # () -> the doctor's checks (kiosk.doctor.held.in_ui)
        self.problem = problem
        self.setup = setup          # not provisioned: submit a scanned setup QR (kiosk.provision)
        self.setup_message = ""
        self.audit = audit          # kiosk.core.audit.AuditLog, or None
        self.listeners: list[Callable[[Controller], None]] = []
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
        self.flow, self.staff = CustomerFlow(self), StaffSession(self)
        self.receipts, self.status_line = Receipts(self), StatusLine(self, status_reader)

    # -- plumbing (for the parts) -------------------------------------------------
    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def _go(self, screen: str, timeout: float | None) -> None:
        self.screen = screen
        self.deadline = None if timeout is None else self.now() + timeout
        self._changed()

    def _signal(self, kind: str) -> None:
        if self.signals is not None:
            try:
                self.signals.show(kind)
            except Exception as exc:  # a dead LED must never stop a redemption
                log.warning("signals.show(%s) failed: %s", kind, exc)

    def _audit(self, kind: str, result=None, **fields) -> None:
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
        return verdict_view(self.result, self.lang, this_device=self._device(),
                            now=datetime.now(UTC), device_name=self.settings.device_name)

    def _device(self) -> str:
        return self.ledger.identity.device if self.ledger is not None else ""

    # -- time ---------------------------------------------------------------
    def activity(self) -> None:
        """A touch anywhere: staff screens and the chosen language stay a while longer."""
        if self.screen in STAFF_SCREENS:
            self.deadline = self.now() + self.settings.staff_timeout
        if self.lang != self.default_lang and self.screen == IDLE:
            self.lang_deadline = self.now() + self.settings.language_timeout

    def tick(self) -> None:
        """Called a few times a second by the app: timeouts and the status line."""
        now = self.now()
        self.flow.tick(now)
        if self.deadline is not None and now >= self.deadline and not self.confirming:
            self._timed_out()
        elif self.flow.pending_ready() and self.deadline is not None:
            self.flow.warn(self.deadline - now)
        elif self.screen == IDLE and self.lang_deadline is not None and now >= self.lang_deadline:
            self.lang_deadline = None
            self.set_language(self.default_lang)
        if self.provisioned and now >= self.status_line.next_at:
            self.refresh_status()

    def _timed_out(self) -> None:
        if self.screen in (VERDICT, DONE):
            self.flow.timed_out()
        else:
            self.go_idle()

    def go_idle(self) -> None:
        """Back to the attract screen; the next customer starts in the default language."""
        self.flow.reset()
        self.waiting = None
        self.pin_text = self.code_text = self.staff_message = ""
        self.page_data, self.lang_deadline = None, None
        self._signal("idle")
        self._go(IDLE if self.provisioned else NOT_PROVISIONED, None)

    def set_language(self, lang: str, *, staff: bool = False) -> None:
        if lang not in LANGUAGES:
            return
        if staff:  # a staff pick stays the kiosk's language until staff change it
            self.default_lang = lang
        self.lang = lang
        if self.screen == IDLE and lang != self.default_lang:
            self.lang_deadline = self.now() + self.settings.language_timeout
        self._changed()

    def cycle_language(self) -> None:
        self.set_language(next_language(self.lang))

    # -- status line (kiosk.ui.status) ----------------------------------------------
    def refresh_status(self) -> None:
        self.status_line.refresh()

    def camera_problem(self, message: str) -> None:
        """The camera is missing or died: staff see it; codes can still be typed."""
        self.status_line.camera_problem(message)

    def camera_ok(self) -> None:
        """The camera works again (the scanner reopened it after a failure)."""
        self.status_line.camera_ok()

    # -- the customer (kiosk.ui.flow) -------------------------------------------------
    def scan(self, payload: str, source: str = "camera") -> bool:
        """A decoded QR payload (or a typed code). Returns False when it is ignored."""
        self.scans_seen += 1
        if not self.provisioned:
            return self._setup_scan(payload)
        return self.flow.scan(payload, source)

    def confirm(self, token: int | None = None, source: str = "touch") -> bool:
        """Staff confirm (touch, physical button, or ``auto`` at the timeout): records the
        redemption once. ``token`` is the screen's token when the finger touched down."""
        return self.flow.confirm(token, source)

    def button_pressed(self) -> None:
        """The physical confirm button (arrives via Clock from the GPIO thread)."""
        self.flow.confirm(None, source="button")

    def cancel(self, token: int | None = None, source: str = "touch") -> bool:
        """Cancel/OK on the verdict screen, or Next customer on Done."""
        return self.flow.cancel(token, source)

    # -- not provisioned ---------------------------------------------------------
    def _setup_scan(self, payload: str) -> bool:
        """Not provisioned: a scanned setup QR is verified and queued for root to apply."""
        if self.setup is None:
            return False
        self.worker.submit(lambda: self.setup(payload), self._setup_done)
        return True

    def _setup_done(self, fields, error) -> None:
        reason = getattr(error, "reason", None)
        if reason == "not_setup_qr":
            self.setup_message = tr(N_("This is not a setup QR code"), self.lang)
        elif error is not None:
            self.setup_message = tr(N_("Setup QR refused: {reason}"), self.lang).format(reason=error)
        else:
            self.setup_message = tr(N_("Setup accepted: {device} in store {store}. The kiosk restarts in a moment."),
                                    self.lang).format(device=fields.get("device"), store=fields.get("store"))
        self._changed()

    # -- staff (kiosk.ui.staff) -----------------------------------------------------
    def open_staff(self) -> None:
        self.staff.open()

    def pin_key(self, key: str) -> None:
        """A keypad key on the PIN screen: a digit, "back" or "ok"."""
        self.staff.pin_key(key)

    def staff_menu(self) -> None:
        self.staff.menu()

    def open_keypad(self) -> None:
        self.staff.open_keypad()

    def code_key(self, key: str) -> None:
        """A key on the code keypad: a letter/digit, "back", "clear" or "ok"."""
        self.staff.code_key(key)

    def open_undo(self) -> None:
        self.staff.open_undo()

    def undo_last(self) -> None:
        """Undo tapped: ask "are you sure?" first (``undo_really`` does it)."""
        self.staff.undo_last()

    def undo_keep(self) -> None:
        """"No, keep it": the redemption stays."""
        self.staff.undo_keep()

    def undo_really(self) -> None:
        self.staff.undo_really()

    def reprint_last(self) -> None:
        """Reprint the last local redemption's receipt (from the Undo page); not once undone."""
        self.staff.reprint_last()

    def open_history(self) -> None:
        self.staff.open_history()

    def open_sync(self) -> None:
        self.staff.open_sync()

    def open_diagnostics(self, keep_message: bool = False) -> None:
        self.staff.open_diagnostics(keep_message)

    def retry_receipts(self) -> None:
        """Diagnostics: print the receipts waiting in the queue (oldest first)."""
        self.receipts.retry()

    def close(self) -> None:
        """Stop background threads (the app calls this on exit)."""
        for worker in {id(self.worker): self.worker, id(self.print_worker): self.print_worker}.values():
            try:
                worker.close()
            except KioskError:
                pass
