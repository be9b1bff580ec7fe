"""The customer flow: a scan becomes a verdict, Confirm records it, Done shows it.

:class:`CustomerFlow` changes the screen state (:class:`~kiosk.ui.state.ScreenState`:
``result``, ``token``, ``waiting`` ...) that the screens read. The rules it keeps
are listed in the controller's docstring and in docs/ui.md: one redemption per
verdict and only for the verdict the finger touched down on, a pending customer is
never replaced without a staff action (the newcomer is held), tap guards, the ready
verdict's warning and timeout.
"""

import logging
from collections.abc import Callable

from kiosk.core import timefmt
from kiosk.core.verdict import Verdict
from kiosk.errors import DiskFullError
from kiosk.ui.i18n import N_, tr
from kiosk.ui.names import DONE, IDLE, STAFF_SCREENS, VERDICT
from kiosk.ui.receipts import Receipts
from kiosk.ui.state import ScreenState

log = logging.getLogger(__name__)

TAP_GUARD = 0.6        # s: taps on a screen that just replaced the one tapped are ignored
DONE_HOLD = 1.5        # s: Done stays at least this long before a held newcomer is shown
RECENT_WINDOW = 120.0  # s: the same card again after its redemption here is "just now"
WARN_SECONDS = 10.0    # s: a ready verdict warns this long before it times out (at most 1/3)


class CustomerFlow:
    def __init__(self, state: ScreenState, receipts: Receipts, *, after_typed: Callable[[], None]):
        self.state, self.receipts = state, receipts
        self.after_typed = after_typed  # a typed code is done: staff go back to the keypad
        self._check_seq = 0

    # -- a scan -------------------------------------------------------------
    def scan(self, payload: str, source: str) -> bool:
        s = self.state
        if s.screen in STAFF_SCREENS and source != "keypad":
            return False
        if s.origin == "keypad" and s.screen in (VERDICT, DONE) and source != "keypad":
            return False  # staff are still working on a typed code: as in the staff menu
        current = s.result.payload if s.result is not None else None
        if s.screen == VERDICT and payload == current:
            return False  # the same card held still
        if s.screen == DONE and s.redeemed is not None and payload == s.redeemed.payload \
                and self.holding():
            return False  # the card just redeemed, still in front of the camera
        if self.holding():
            if s.waiting is None or s.waiting[0] != payload:
                s.waiting = (payload, source)
                s.record_audit("held", source=source, note="next customer waiting")
                s.changed()
            return False
        self.check(payload, source)
        return True

    def holding(self) -> bool:
        """Whether a new code must wait for staff to finish the current customer."""
        s = self.state
        if s.confirming or self.pending_ready():
            return True
        return s.screen == DONE and s.now() < s.done_at + DONE_HOLD

    def pending_ready(self) -> bool:
        s = self.state
        return s.screen == VERDICT and s.result is not None and s.result.verdict is Verdict.READY

    def check(self, payload: str, source: str, guard: bool = False) -> None:
        s = self.state
        self._check_seq += 1
        seq, lang = self._check_seq, s.lang
        if s.checker is not None:  # a read in WAL mode: ~1 ms, never waits for writers
            try:
                result, error = s.checker.check(payload, lang=lang), None
            except Exception as exc:
                result, error = None, exc
            self._checked(seq, source, result, error, guard)
            return
        s.worker.submit(lambda: s.ledger.check(payload, lang=lang),
                        lambda result, error: self._checked(seq, source, result, error, guard))

    def _checked(self, seq: int, source: str, result, error, guard: bool = False) -> None:
        s = self.state
        if seq != self._check_seq or s.confirming:
            return
        if s.screen in STAFF_SCREENS and source not in ("keypad", "confirm"):
            return
        if error is not None:
            self.fail(tr(N_("Could not check the code: {error}"), s.lang).format(error=error))
            return
        if source != "confirm":
            s.record_audit("scan", result, source=source)
        if self._redeemed_just_now(result):
            s.record_audit("again", result, source=source)
            s.redeemed, s.result, s.again = result, None, True
            s.origin = source
            s.token += 1
            s.signal("redeemed")
            self._show_done()
            return
        s.result, s.record_error, s.warning, s.again = result, "", 0, False
        s.origin = source if source != "confirm" else s.origin
        s.token += 1
        s.verdicts_shown += 1
        view = s.view()
        s.record_audit("verdict", result, source=s.origin)
        s.signal(view.signal)
        ready = result.verdict is Verdict.READY
        s.go(VERDICT, s.settings.verdict_timeout if ready else s.settings.refusal_timeout)
        if guard:
            s.guard_until = s.now() + TAP_GUARD

    def _redeemed_just_now(self, result) -> bool:
        """A card whose last use was on this kiosk a moment ago, shown again."""
        detail = result.detail or {}
        if result.verdict not in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) or result.at is None \
                or detail.get("last_device") != self.state.this_device or not detail.get("last_at"):
            return False
        try:
            ago = (result.at - timefmt.parse(detail["last_at"])).total_seconds()
        except ValueError:
            return False
        return -5 <= ago <= RECENT_WINDOW

    def _show_done(self) -> None:
        s = self.state
        s.done_at = s.now()
        s.guard_until = s.done_at + TAP_GUARD
        s.go(DONE, s.settings.done_timeout)
        s.changed()

    def fail(self, message: str) -> None:
        s = self.state
        log.error("%s", message)
        s.record_error = message
        s.signal("error")
        s.go(VERDICT if s.result is not None else IDLE, s.settings.refusal_timeout)

    # -- Confirm and Cancel ---------------------------------------------------
    def confirm(self, token: int | None, source: str) -> bool:
        s = self.state
        if s.screen != VERDICT or s.confirming or s.result is None:
            return False
        if s.result.verdict is not Verdict.READY or (token is not None and token != s.token):
            return False
        if source == "touch" and s.guarded:
            return False
        s.confirming, s.record_error, s.warning = True, "", 0
        s.deadline = None
        payload, lang, result = s.result.payload, s.lang, s.result
        s.changed()
        s.worker.submit(lambda: s.ledger.confirm(payload, lang=lang),
                        lambda done, error: self._confirmed(result, source, done, error))
        return True

    def _confirmed(self, asked, source: str, result, error) -> None:
        s = self.state
        s.confirming = False
        if error is not None:
            s.record_audit("confirm_failed", asked, source=source, note=str(error)[:200])
            if isinstance(error, DiskFullError):  # staff cannot fix this one by trying again
                full = N_(
                    "Not recorded: storage is full. Nothing was redeemed; call a technician.")
                self.fail(tr(full, s.lang))
            else:
                self.fail(tr(N_("Not recorded: {error}. Nothing was redeemed; try again."),
                             s.lang).format(error=error))
            return
        if result.verdict is not Verdict.REDEEMED:  # e.g. redeemed next door a second ago
            s.record_audit("confirm_failed", result, source=source, note="verdict changed")
            self._checked(self._check_seq, "confirm", result, None)
            return
        s.record_audit("confirm", result, source=source)
        s.redeemed, s.result, s.again = result, None, False
        s.token += 1
        s.signal("redeemed")
        self._show_done()
        self.receipts.print(result.redemption_id, reprint=False)

    def cancel(self, token: int | None, source: str) -> bool:
        s = self.state
        if s.confirming or s.screen not in (VERDICT, DONE):
            return False
        if (token is not None and token != s.token) or (source == "touch" and s.guarded):
            return False
        if s.screen == VERDICT and s.result is not None:
            s.record_audit("cancel", s.result, source=s.origin)
        self.finish()
        return True

    # -- time -----------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Tap guards that ran out, and the held newcomer's turn after Done."""
        s = self.state
        if s.guard_until and now >= s.guard_until:
            s.guard_until = 0.0
            s.changed()  # Done's button comes alive
        if s.screen == DONE and s.waiting is not None and now >= s.done_at + DONE_HOLD:
            self.finish()  # the held newcomer's turn

    def warn(self, left: float) -> None:
        """The last seconds of a ready verdict: the screen flashes and counts down."""
        s = self.state
        window = min(WARN_SECONDS, s.settings.verdict_timeout / 3)
        seconds = int(left) + 1 if left <= window else 0
        if seconds != s.warning:
            if seconds and not s.warning:
                s.signal("ready")
            s.warning = seconds
            s.changed()

    def timed_out(self) -> None:
        """The verdict or Done screen timed out: a ready verdict is recorded as
        unconfirmed (or confirmed with ``[ui] auto_confirm``)."""
        s = self.state
        if s.screen == VERDICT and self.pending_ready():
            if s.settings.auto_confirm and not s.record_error:  # no endless retries
                self.confirm(None, source="auto")
                return
            s.record_audit("timeout", s.result, source=s.origin, note="unconfirmed")
            log.warning("ready verdict for code …%s timed out unconfirmed", s.result.masked_code)
        self.finish()

    def finish(self) -> None:
        """The current customer is done (confirmed, cancelled, timed out): show the held
        newcomer, or return staff to the keypad after a typed code, or go to Idle."""
        s = self.state
        waiting, typed = s.waiting, s.origin == "keypad"
        s.waiting = None
        if waiting is not None:
            s.reset_customer()
            self.check(*waiting, guard=True)
        elif typed:
            s.reset_customer()
            self.after_typed()
        else:
            s.go_idle()
