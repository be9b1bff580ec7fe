"""The customer flow: a scan becomes a verdict, Confirm records it, Done shows it.

:class:`CustomerFlow` changes the screen state that lives on the
:class:`~kiosk.ui.controller.Controller` (``result``, ``token``, ``waiting`` ...), so
screens read one object. The rules it keeps are listed in the controller's docstring
and in docs/ui.md: one redemption per verdict and only for the verdict the finger
touched down on, a pending customer is never replaced without a staff action (the
newcomer is held), tap guards, the ready verdict's warning and timeout.
"""

import logging
from typing import TYPE_CHECKING

from kiosk.core import timefmt
from kiosk.core.verdict import Verdict
from kiosk.ui.i18n import N_, tr
from kiosk.ui.names import DONE, IDLE, STAFF_SCREENS, VERDICT

if TYPE_CHECKING:
    from kiosk.ui.controller import Controller

log = logging.getLogger(__name__)

TAP_GUARD = 0.6        # s: taps on a screen that just replaced the one tapped are ignored
DONE_HOLD = 1.5        # s: Done stays at least this long before a held newcomer is shown
RECENT_WINDOW = 120.0  # s: the same card again after its redemption here is "just now"
WARN_SECONDS = 10.0    # s: a ready verdict warns this long before it times out (at most 1/3)


class CustomerFlow:
    def __init__(self, ctl: "Controller"):
        self.ctl = ctl
        self._check_seq = 0

    # -- a scan -------------------------------------------------------------
    def scan(self, payload: str, source: str) -> bool:
        c = self.ctl
        if c.screen in STAFF_SCREENS and source != "keypad":
            return False
        if c.origin == "keypad" and c.screen in (VERDICT, DONE) and source != "keypad":
            return False  # staff are still working on a typed code: as in the staff menu
        current = c.result.payload if c.result is not None else None
        if c.screen == VERDICT and payload == current:
            return False  # the same card held still
        if c.screen == DONE and c.redeemed is not None and payload == c.redeemed.payload \
                and self.holding():
            return False  # the card just redeemed, still in front of the camera
        if self.holding():
            if c.waiting is None or c.waiting[0] != payload:
                c.waiting = (payload, source)
                c._audit("held", source=source, note="next customer waiting")
                c._changed()
            return False
        self.check(payload, source)
        return True

    def holding(self) -> bool:
        """Whether a new code must wait for staff to finish the current customer."""
        c = self.ctl
        if c.confirming or self.pending_ready():
            return True
        return c.screen == DONE and c.now() < c.done_at + DONE_HOLD

    def pending_ready(self) -> bool:
        c = self.ctl
        return c.screen == VERDICT and c.result is not None and c.result.verdict is Verdict.READY

    def check(self, payload: str, source: str, guard: bool = False) -> None:
        c = self.ctl
        self._check_seq += 1
        seq, lang = self._check_seq, c.lang
        if c.checker is not None:  # a read in WAL mode: ~1 ms, never waits for writers
            try:
                result, error = c.checker.check(payload, lang=lang), None
            except Exception as exc:
                result, error = None, exc
            self._checked(seq, source, result, error, guard)
            return
        c.worker.submit(lambda: c.ledger.check(payload, lang=lang),
                        lambda result, error: self._checked(seq, source, result, error, guard))

    def _checked(self, seq: int, source: str, result, error, guard: bool = False) -> None:
        c = self.ctl
        if seq != self._check_seq or c.confirming:
            return
        if c.screen in STAFF_SCREENS and source not in ("keypad", "confirm"):
            return
        if error is not None:
            self.fail(tr(N_("Could not check the code: {error}"), c.lang).format(error=error))
            return
        if source != "confirm":
            c._audit("scan", result, source=source)
        if self._redeemed_just_now(result):
            c._audit("again", result, source=source)
            c.redeemed, c.result, c.again = result, None, True
            c.origin = source
            c.token += 1
            c._signal("redeemed")
            self._show_done()
            return
        c.result, c.record_error, c.warning, c.again = result, "", 0, False
        c.origin = source if source != "confirm" else c.origin
        c.token += 1
        c.verdicts_shown += 1
        view = c.view()
        c._audit("verdict", result, source=c.origin)
        c._signal(view.signal)
        ready = result.verdict is Verdict.READY
        c._go(VERDICT, c.settings.verdict_timeout if ready else c.settings.refusal_timeout)
        if guard:
            c.guard_until = c.now() + TAP_GUARD

    def _redeemed_just_now(self, result) -> bool:
        """A card whose last use was on this kiosk a moment ago, shown again."""
        detail = result.detail or {}
        if result.verdict not in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) or result.at is None \
                or detail.get("last_device") != self.ctl._device() or not detail.get("last_at"):
            return False
        try:
            ago = (result.at - timefmt.parse(detail["last_at"])).total_seconds()
        except ValueError:
            return False
        return -5 <= ago <= RECENT_WINDOW

    def _show_done(self) -> None:
        c = self.ctl
        c.done_at = c.now()
        c.guard_until = c.done_at + TAP_GUARD
        c._go(DONE, c.settings.done_timeout)
        c._changed()

    def fail(self, message: str) -> None:
        c = self.ctl
        log.error("%s", message)
        c.record_error = message
        c._signal("error")
        c._go(VERDICT if c.result is not None else IDLE, c.settings.refusal_timeout)

    # -- Confirm and Cancel ---------------------------------------------------
    def confirm(self, token: int | None, source: str) -> bool:
        c = self.ctl
        if c.screen != VERDICT or c.confirming or c.result is None:
            return False
        if c.result.verdict is not Verdict.READY or (token is not None and token != c.token):
            return False
        if source == "touch" and c.guarded:
            return False
        c.confirming, c.record_error, c.warning = True, "", 0
        c.deadline = None
        payload, lang, result = c.result.payload, c.lang, c.result
        c._changed()
        c.worker.submit(lambda: c.ledger.confirm(payload, lang=lang),
                        lambda done, error: self._confirmed(result, source, done, error))
        return True

    def _confirmed(self, asked, source: str, result, error) -> None:
        c = self.ctl
        c.confirming = False
        if error is not None:
            c._audit("confirm_failed", asked, source=source, note=str(error)[:200])
            self.fail(tr(N_("Not recorded: {error}. Nothing was redeemed; try again."),
                         c.lang).format(error=error))
            return
        if result.verdict is not Verdict.REDEEMED:  # e.g. redeemed next door a second ago
            c._audit("confirm_failed", result, source=source, note="verdict changed")
            self._checked(self._check_seq, "confirm", result, None)
            return
        c._audit("confirm", result, source=source)
        c.redeemed, c.result, c.again = result, None, False
        c.token += 1
        c._signal("redeemed")
        self._show_done()
        c.receipts.print(result.redemption_id, reprint=False)

    def cancel(self, token: int | None, source: str) -> bool:
        c = self.ctl
        if c.confirming or c.screen not in (VERDICT, DONE):
            return False
        if (token is not None and token != c.token) or (source == "touch" and c.guarded):
            return False
        if c.screen == VERDICT and c.result is not None:
            c._audit("cancel", c.result, source=c.origin)
        self.finish()
        return True

    # -- time -----------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Tap guards that ran out, and the held newcomer's turn after Done."""
        c = self.ctl
        if c.guard_until and now >= c.guard_until:
            c.guard_until = 0.0
            c._changed()  # Done's button comes alive
        if c.screen == DONE and c.waiting is not None and now >= c.done_at + DONE_HOLD:
            self.finish()  # the held newcomer's turn

    def warn(self, left: float) -> None:
        """The last seconds of a ready verdict: the screen flashes and counts down."""
        c = self.ctl
        window = min(WARN_SECONDS, c.settings.verdict_timeout / 3)
        seconds = int(left) + 1 if left <= window else 0
        if seconds != c.warning:
            if seconds and not c.warning:
                c._signal("ready")
            c.warning = seconds
            c._changed()

    def timed_out(self) -> None:
        """The verdict or Done screen timed out: a ready verdict is recorded as
        unconfirmed (or confirmed with ``[ui] auto_confirm``)."""
        c = self.ctl
        if c.screen == VERDICT and self.pending_ready():
            if c.settings.auto_confirm and not c.record_error:  # no endless retries
                self.confirm(None, source="auto")
                return
            c._audit("timeout", c.result, source=c.origin, note="unconfirmed")
            log.warning("ready verdict for code …%s timed out unconfirmed", c.result.masked_code)
        self.finish()

    def reset(self) -> None:
        c = self.ctl
        c.result, c.redeemed, c.confirming, c.record_error = None, None, False, ""
        c.origin, c.warning, c.again, c.guard_until = "", 0, False, 0.0
        c.lang = c.default_lang

    def finish(self) -> None:
        """The current customer is done (confirmed, cancelled, timed out): show the held
        newcomer, or return staff to the keypad after a typed code, or go to Idle."""
        c = self.ctl
        waiting, typed = c.waiting, c.origin == "keypad"
        c.waiting = None
        if waiting is not None:
            self.reset()
            self.check(*waiting, guard=True)
        elif typed:
            self.reset()
            c.staff.open_keypad()
        else:
            c.go_idle()
