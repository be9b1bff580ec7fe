"""The kiosk's state machine: what is on screen and what a tap or a scan does.

Screens read the state kept here (:class:`~kiosk.ui.state.ScreenState`) and call only
the public methods; each method hands the work to the part that does it: :mod:`kiosk.ui.flow` (the customer: scan, verdict,
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

from kiosk.errors import KioskError
from kiosk.i18n import say
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
from kiosk.ui.receipts import Receipts
from kiosk.ui.staff import StaffSession
from kiosk.ui.state import ScreenState
from kiosk.ui.status import STATUS_EVERY, StatusLine

__all__ = ["Controller", "IDLE", "VERDICT", "DONE", "PIN", "STAFF", "KEYPAD", "UNDO", "HISTORY",
           "SYNC", "DIAGNOSTICS", "NOT_PROVISIONED", "STAFF_SCREENS", "STATUS_EVERY", "TAP_GUARD",
           "DONE_HOLD", "RECENT_WINDOW", "WARN_SECONDS"]


class Controller(ScreenState):
    """The screen state (its keyword arguments: :class:`ScreenState`) with the parts
    that change it; ``status_reader(store)`` gives the sync agent's state."""

    def __init__(self, ledger=None, *, status_reader=None, **kwargs):
        super().__init__(ledger, **kwargs)
        self.receipts, self.status_line = Receipts(self), StatusLine(self, status_reader)
        self.staff = StaffSession(self, self.receipts, self.status_line, scan=self.scan)
        self.flow = CustomerFlow(self, self.receipts, after_typed=self.staff.open_keypad)

    # -- time ---------------------------------------------------------------
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

    def set_language(self, lang: str, *, staff: bool = False) -> None:
        if lang not in LANGUAGES:
            return
        if staff:  # a staff pick stays the kiosk's language until staff change it
            self.default_lang = lang
        self.lang = lang
        if self.screen == IDLE and lang != self.default_lang:
            self.lang_deadline = self.now() + self.settings.language_timeout
        self.changed()

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
            self.setup_message = tr(N_("Setup QR refused: {reason}"), self.lang).format(
                reason=say(error, self.lang))
        else:
            self.setup_message = tr(N_("Setup accepted: {device} in store {store}. The kiosk restarts in a moment."),
                                    self.lang).format(device=fields.get("device"), store=fields.get("store"))
        self.changed()

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
        self.staff.retry_receipts()

    def close(self) -> None:
        """Stop background threads (the app calls this on exit)."""
        for worker in {id(self.worker): self.worker, id(self.print_worker): self.print_worker}.values():
            try:
                worker.close()
            except KioskError:
                pass
