"""The kiosk's state machine: what is on screen and what a tap or a scan does.

Screens call only the public methods here; the controller calls the ledger, the
receipt printer and the signals (LED/buzzer) it was given, so tests pass real fakes.
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
from datetime import time as dtime

from kiosk.core import importer, timefmt
from kiosk.core.verdict import Verdict
from kiosk.errors import KioskError
from kiosk.ui import pin as pins
from kiosk.ui.i18n import LANGUAGES, N_, next_language, tr
from kiosk.ui.present import verdict_view
from kiosk.ui.settings import UiSettings
from kiosk.ui.worker import InlineWorker

log = logging.getLogger(__name__)

IDLE, VERDICT, DONE, PIN, STAFF = "idle", "verdict", "done", "pin", "staff"
KEYPAD, UNDO, HISTORY, SYNC, DIAGNOSTICS = "keypad", "undo", "history", "sync", "diagnostics"
NOT_PROVISIONED = "not_provisioned"
STAFF_SCREENS = (PIN, STAFF, KEYPAD, UNDO, HISTORY, SYNC, DIAGNOSTICS)
STATUS_EVERY = 30.0
TAP_GUARD = 0.6        # s: taps on a screen that just replaced the one tapped are ignored
DONE_HOLD = 1.5        # s: Done stays at least this long before a held newcomer is shown
RECENT_WINDOW = 120.0  # s: the same card again after its redemption here is "just now"
WARN_SECONDS = 10.0    # s: a ready verdict warns this long before it times out (at most 1/3)


class Controller:
    def __init__(self, ledger=None, *, settings: UiSettings | None = None, printer=None,
                 signals=None, worker=None, print_worker=None,
                 post: Callable[[Callable[[], None]], None] | None = None,
                 now: Callable[[], float] = time.monotonic, status_reader=None,
                 diagnostics=None, problem: str = "", checker=None, setup=None, audit=None):
        self.ledger, self.printer, self.signals = ledger, printer, signals
        self.checker = checker  # a Ledger on its own read connection, for checks in place
        self.settings = settings or UiSettings()
        self.worker = worker or InlineWorker()
        self.print_worker = print_worker or self.worker
        self.post = post or (lambda fn: fn())
        self.now, self.status_reader, self.diagnostics = now, status_reader, diagnostics
        self.problem = problem
        self.setup = setup          # not provisioned: submit a scanned setup QR (kiosk.provision)
        self.setup_message = ""
        self.audit = audit          # kiosk.core.audit.AuditLog, or None
        self.listeners: list[Callable[[Controller], None]] = []
        self.default_lang = self.settings.language if self.settings.language in LANGUAGES else "en"
        self.lang = self.default_lang
        self.screen = NOT_PROVISIONED if ledger is None else IDLE
        self.result = None          # the Result on the verdict screen
        self.token = 0              # changes whenever a new verdict is shown
        self.confirming = False
        self.origin = ""            # where the verdict's code came from: camera, keyboard, keypad
        self.waiting: tuple[str, str] | None = None  # a held newcomer: (payload, source)
        self.warning = 0            # seconds left on a ready verdict about to time out (0: none)
        self.guard_until = 0.0      # taps on the current screen count from this time on
        self.done_at = 0.0          # when Done appeared
        self.again = False          # Done shows "Redeemed just now here"
        self.undo_asking = False    # the Undo page asks "are you sure?"
        self.record_error = ""      # staff-facing text when a confirm could not be recorded
        self.redeemed = None        # the Result of the last confirm, for the Done screen
        self.print_state, self.print_message = "", ""
        self.pin_text, self.pin_message, self.pin_tries, self.locked_until = "", "", 0, 0.0
        self.code_text, self.staff_message, self.page_data = "", "", None
        self.status: dict = {"camera": "ok", "camera_message": "", "printer": "", "printer_message": ""}
        self.deadline: float | None = None
        self.lang_deadline: float | None = None
        self._check_seq, self._next_status = 0, 0.0
        self.scans_seen, self.verdicts_shown = 0, 0

    # -- plumbing -----------------------------------------------------------
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
        if self.guard_until and now >= self.guard_until:
            self.guard_until = 0.0
            self._changed()  # Done's button comes alive
        if self.screen == DONE and self.waiting is not None and now >= self.done_at + DONE_HOLD:
            self._finish()  # the held newcomer's turn
        if self.deadline is not None and now >= self.deadline and not self.confirming:
            self._timed_out()
        elif self._pending_ready() and self.deadline is not None:
            self._warn(self.deadline - now)
        elif self.screen == IDLE and self.lang_deadline is not None and now >= self.lang_deadline:
            self.lang_deadline = None
            self.set_language(self.default_lang)
        if self.provisioned and now >= self._next_status:
            self.refresh_status()

    def _pending_ready(self) -> bool:
        return (self.screen == VERDICT and self.result is not None
                and self.result.verdict is Verdict.READY)

    def _warn(self, left: float) -> None:
        """The last seconds of a ready verdict: the screen flashes and counts down."""
        window = min(WARN_SECONDS, self.settings.verdict_timeout / 3)
        seconds = int(left) + 1 if left <= window else 0
        if seconds != self.warning:
            if seconds and not self.warning:
                self._signal("ready")
            self.warning = seconds
            self._changed()

    def _timed_out(self) -> None:
        if self.screen == VERDICT and self._pending_ready():
            if self.settings.auto_confirm and not self.record_error:  # no endless retries
                self.confirm(source="auto")
                return
            self._audit("timeout", self.result, source=self.origin, note="unconfirmed")
            log.warning("ready verdict for code …%s timed out unconfirmed", self.result.masked_code)
        if self.screen in (VERDICT, DONE):
            self._finish()
        else:
            self.go_idle()

    def go_idle(self) -> None:
        """Back to the attract screen; the next customer starts in the default language."""
        self._reset_customer()
        self.waiting = None
        self.pin_text = self.code_text = self.staff_message = ""
        self.page_data, self.lang_deadline = None, None
        self._signal("idle")
        self._go(IDLE if self.provisioned else NOT_PROVISIONED, None)

    def _reset_customer(self) -> None:
        self.result, self.redeemed, self.confirming, self.record_error = None, None, False, ""
        self.origin, self.warning, self.again, self.guard_until = "", 0, False, 0.0
        self.lang = self.default_lang

    def _finish(self) -> None:
        """The current customer is done (confirmed, cancelled, timed out): show the held
        newcomer, or return staff to the keypad after a typed code, or go to Idle."""
        waiting, typed = self.waiting, self.origin == "keypad"
        self.waiting = None
        if waiting is not None:
            self._reset_customer()
            self._check(*waiting, guard=True)
        elif typed:
            self._reset_customer()
            self.open_keypad()
        else:
            self.go_idle()

    # -- status line --------------------------------------------------------
    def refresh_status(self) -> None:
        self._next_status = self.now() + STATUS_EVERY
        self.worker.submit(self._read_status, self._status_read)

    def _read_status(self) -> dict:
        info: dict = {}
        have = self.ledger.store.current_list()
        if have is not None:
            info["list_version"] = have.version
            info["list_age_s"] = (datetime.now(UTC) - have.issued_at).total_seconds()
            info["list_expired"] = have.expires_at <= datetime.now(UTC)
        sync: dict = {}
        if self.status_reader is not None:
            try:
                sync = self.status_reader(self.ledger.store) or {}
                info.update(online=bool(sync.get("connected")), last_sync=sync.get("last_sync"))
            except Exception as exc:
                log.warning("sync status unavailable: %s", exc)
        # the sync status already counted the outbox; count it here only without one
        info["pending"] = sync["pending"] if "pending" in sync else self.ledger.outbox_depth()
        return info

    def _status_read(self, info, error) -> None:
        if error is None:
            for key in ("list_version", "list_age_s", "list_expired", "online", "last_sync"):
                self.status.pop(key, None)
            self.status.update(info)
            self._changed()

    def camera_problem(self, message: str) -> None:
        """The camera is missing or died: staff see it; codes can still be typed."""
        self.status.update(camera="missing", camera_message=message)
        self._changed()

    def camera_ok(self) -> None:
        """The camera works again (the scanner reopened it after a failure)."""
        self.status.update(camera="ok", camera_message="")
        self._changed()

    # -- customer flow ------------------------------------------------------
    def scan(self, payload: str, source: str = "camera") -> bool:
        """A decoded QR payload (or a typed code). Returns False when it is ignored."""
        self.scans_seen += 1
        if not self.provisioned:
            return self._setup_scan(payload)
        if self.screen in STAFF_SCREENS and source != "keypad":
            return False
        if self.origin == "keypad" and self.screen in (VERDICT, DONE) and source != "keypad":
            return False  # staff are still working on a typed code: as in the staff menu
        current = self.result.payload if self.result is not None else None
        if self.screen == VERDICT and payload == current:
            return False  # the same card held still
        if self.screen == DONE and self.redeemed is not None and payload == self.redeemed.payload \
                and self._holding():
            return False  # the card just redeemed, still in front of the camera
        if self._holding():
            if self.waiting is None or self.waiting[0] != payload:
                self.waiting = (payload, source)
                self._audit("held", source=source, note="next customer waiting")
                self._changed()
            return False
        self._check(payload, source)
        return True

    def _holding(self) -> bool:
        """Whether a new code must wait for staff to finish the current customer."""
        if self.confirming or self._pending_ready():
            return True
        return self.screen == DONE and self.now() < self.done_at + DONE_HOLD

    def _check(self, payload: str, source: str, guard: bool = False) -> None:
        self._check_seq += 1
        seq, lang = self._check_seq, self.lang
        if self.checker is not None:  # a read in WAL mode: ~1 ms, never waits for writers
            try:
                result, error = self.checker.check(payload, lang=lang), None
            except Exception as exc:
                result, error = None, exc
            self._checked(seq, source, result, error, guard)
            return
        self.worker.submit(lambda: self.ledger.check(payload, lang=lang),
                           lambda result, error: self._checked(seq, source, result, error, guard))

    def _checked(self, seq: int, source: str, result, error, guard: bool = False) -> None:
        if seq != self._check_seq or self.confirming:
            return
        if self.screen in STAFF_SCREENS and source not in ("keypad", "confirm"):
            return
        if error is not None:
            self._fail(tr(N_("Could not check the code: {error}"), self.lang).format(error=error))
            return
        if source != "confirm":
            self._audit("scan", result, source=source)
        if self._redeemed_just_now(result):
            self._audit("again", result, source=source)
            self.redeemed, self.result, self.again = result, None, True
            self.origin = source
            self.token += 1
            self._signal("redeemed")
            self._show_done()
            return
        self.result, self.record_error, self.warning, self.again = result, "", 0, False
        self.origin = source if source != "confirm" else self.origin
        self.token += 1
        self.verdicts_shown += 1
        view = self.view()
        self._audit("verdict", result, source=self.origin)
        self._signal(view.signal)
        ready = result.verdict is Verdict.READY
        self._go(VERDICT, self.settings.verdict_timeout if ready else self.settings.refusal_timeout)
        if guard:
            self.guard_until = self.now() + TAP_GUARD

    def _redeemed_just_now(self, result) -> bool:
        """A card whose last use was on this kiosk a moment ago, shown again."""
        detail = result.detail or {}
        if result.verdict not in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) or result.at is None \
                or detail.get("last_device") != self._device() or not detail.get("last_at"):
            return False
        try:
            ago = (result.at - timefmt.parse(detail["last_at"])).total_seconds()
        except ValueError:
            return False
        return -5 <= ago <= RECENT_WINDOW

    def _show_done(self) -> None:
        self.done_at = self.now()
        self.guard_until = self.done_at + TAP_GUARD
        self._go(DONE, self.settings.done_timeout)
        self._changed()

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

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.record_error = message
        self._signal("error")
        self._go(VERDICT if self.result is not None else IDLE, self.settings.refusal_timeout)

    def confirm(self, token: int | None = None, source: str = "touch") -> bool:
        """Staff confirm (touch, physical button, or ``auto`` at the timeout): records the
        redemption once. ``token`` is the screen's token when the finger touched down."""
        if self.screen != VERDICT or self.confirming or self.result is None:
            return False
        if self.result.verdict is not Verdict.READY or (token is not None and token != self.token):
            return False
        if source == "touch" and self.guarded:
            return False
        self.confirming, self.record_error, self.warning = True, "", 0
        self.deadline = None
        payload, lang, result = self.result.payload, self.lang, self.result
        self._changed()
        self.worker.submit(lambda: self.ledger.confirm(payload, lang=lang),
                           lambda done, error: self._confirmed(result, source, done, error))
        return True

    def button_pressed(self) -> None:
        """The physical confirm button (arrives via Clock from the GPIO thread)."""
        self.confirm(source="button")

    def _confirmed(self, asked, source: str, result, error) -> None:
        self.confirming = False
        if error is not None:
            self._audit("confirm_failed", asked, source=source, note=str(error)[:200])
            self._fail(tr(N_("Not recorded: {error}. Nothing was redeemed; try again."),
                          self.lang).format(error=error))
            return
        if result.verdict is not Verdict.REDEEMED:  # e.g. redeemed next door a second ago
            self._audit("confirm_failed", result, source=source, note="verdict changed")
            self._checked(self._check_seq, "confirm", result, None)
            return
        self._audit("confirm", result, source=source)
        self.redeemed, self.result, self.again = result, None, False
        self.token += 1
        self._signal("redeemed")
        self._show_done()
        self._print(result.redemption_id, reprint=False)

    def cancel(self, token: int | None = None, source: str = "touch") -> bool:
        """Cancel/OK on the verdict screen, or Next customer on Done."""
        if self.confirming or self.screen not in (VERDICT, DONE):
            return False
        if (token is not None and token != self.token) or (source == "touch" and self.guarded):
            return False
        if self.screen == VERDICT and self.result is not None:
            self._audit("cancel", self.result, source=self.origin)
        self._finish()
        return True

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

    # -- printing -----------------------------------------------------------
    def _print(self, redemption_id: str, *, reprint: bool) -> None:
        if self.printer is None:
            self.print_state, self.print_message = "no_printer", ""
            self._changed()
            return
        self.print_state, self.print_message = "printing", ""
        lang = self.lang
        self.print_worker.submit(
            lambda: self.printer.print_redemption(redemption_id, reprint=reprint, lang=lang),
            lambda outcome, error: self._printed(redemption_id, outcome, error))
        self._changed()

    def _printed(self, redemption_id: str, outcome, error) -> None:
        if error is not None:
            state, message = "failed", str(error)
        else:
            state, message = outcome.state, outcome.message
        self.status.update(printer=state, printer_message=message)
        current = self.redeemed is not None and self.redeemed.redemption_id == redemption_id
        if current or self.screen in STAFF_SCREENS:
            self.print_state, self.print_message = state, message
        if current and self.screen == DONE and state != "printed":
            self.deadline = self.now() + self.settings.done_timeout * 2  # staff must see it
        self._changed()

    # -- staff: PIN ---------------------------------------------------------
    def open_staff(self) -> None:
        self.pin_text, self.pin_message = "", ""
        if not self.settings.pin_hash:
            self.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), self.lang)
        self._go(PIN, self.settings.staff_timeout)

    def pin_key(self, key: str) -> None:
        """A keypad key on the PIN screen: a digit, "back" or "ok"."""
        self.activity()
        if key == "back":
            self.pin_text = self.pin_text[:-1]
        elif key == "ok":
            self._check_pin()
            return
        elif key.isdigit() and len(self.pin_text) < pins.MAX_DIGITS:
            self.pin_text += key
        self._changed()

    def _check_pin(self) -> None:
        now = self.now()
        if now < self.locked_until:
            wait = int(self.locked_until - now) + 1
            self.pin_message = tr(N_("Too many tries: wait {n} s"), self.lang).format(n=wait)
        elif not self.settings.pin_hash:
            self.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), self.lang)
        elif pins.verify(self.pin_text, self.settings.pin_hash):
            self.pin_tries, self.pin_text = 0, ""
            self.staff_menu()
            return
        else:
            self.pin_tries += 1
            self.pin_message = tr(N_("Wrong PIN"), self.lang)
            if self.pin_tries >= self.settings.max_pin_tries:
                self.pin_tries, self.locked_until = 0, now + self.settings.pin_lockout
        self.pin_text = ""
        self._changed()

    # -- staff: menu and pages -------------------------------------------------
    def staff_menu(self) -> None:
        self.staff_message, self.page_data = "", None
        self._go(STAFF, self.settings.staff_timeout)

    def _page(self, screen: str, load: Callable[[], object] | None) -> None:
        self.staff_message, self.page_data, self.print_state = "", None, ""
        self.undo_asking = False
        self._go(screen, self.settings.staff_timeout)
        if load is not None:
            self.worker.submit(load, lambda data, error: self._page_loaded(screen, data, error))

    def _page_loaded(self, screen: str, data, error) -> None:
        if self.screen != screen:
            return
        self.page_data = data if error is None else None
        if error is not None:
            self.staff_message = str(error)
        self._changed()

    def open_keypad(self) -> None:
        self.code_text = ""
        self._page(KEYPAD, None)

    def code_key(self, key: str) -> None:
        """A key on the code keypad: a letter/digit, "back", "clear" or "ok"."""
        self.activity()
        if key == "ok":
            code = self.code_text.strip()
            if code:
                self.scan(code, source="keypad")
            return
        if key == "back":
            self.code_text = self.code_text[:-1]
        elif key == "clear":
            self.code_text = ""
        elif len(key) == 1 and len(self.code_text) < 40:
            self.code_text += key
        self._changed()

    def _last_redemption(self) -> dict | None:
        row = self.ledger.last_local_redemption()
        have = self.ledger.store.current_list()
        if row is not None and have is not None:
            row = dict(row, reward=have.rewards.get(row["reward_id"]))
        return row

    def open_undo(self) -> None:
        self._page(UNDO, self._last_redemption)

    def undo_last(self) -> None:
        """Undo tapped: ask "are you sure?" first (``undo_really`` does it)."""
        row = self.page_data
        if self.screen != UNDO or not row or row.get("voided_by"):
            return
        self.undo_asking = True
        self._changed()

    def undo_keep(self) -> None:
        """"No, keep it": the redemption stays."""
        self.undo_asking = False
        self._changed()

    def undo_really(self) -> None:
        row = self.page_data
        if self.screen != UNDO or not self.undo_asking or not row or row.get("voided_by"):
            return
        self.undo_asking = False
        self.worker.submit(lambda: self.ledger.void(row["id"], staff="staff-menu"),
                           lambda event, error: self._undone(row, event, error))
        self._changed()

    def _undone(self, row, event, error) -> None:
        if error is not None:
            self._audit("undo_failed", redemption_id=row["id"], masked_code=row.get("masked_code"),
                        note=str(error)[:200])
            self.staff_message = tr(N_("Cannot undo: {reason}"), self.lang).format(reason=error)
        else:
            self._audit("undo", redemption_id=row["id"], code_hash=row.get("code_hash"),
                        masked_code=row.get("masked_code"), reward_id=row.get("reward_id"),
                        source="staff-menu")
            self.staff_message = tr(N_("Undone: the reward can be used again"), self.lang)
            self._signal("idle")
        if self.screen == UNDO:
            self.worker.submit(self._last_redemption,
                               lambda data, err: self._page_loaded(UNDO, data, err))
        self._changed()

    def reprint_last(self) -> None:
        """Reprint the last local redemption's receipt (from the Undo page); not once undone."""
        row = self.page_data
        if self.screen != UNDO or not row or row.get("voided_by") or self.undo_asking:
            return
        self._print(row["id"], reprint=True)

    def open_history(self) -> None:
        midnight = datetime.combine(datetime.now().date(), dtime.min).astimezone()

        def load():
            have = self.ledger.store.current_list()
            rewards = have.rewards if have is not None else {}
            rows = self.ledger.history(since=midnight.astimezone(UTC), limit=200)
            if self.audit is not None:  # ready verdicts nobody confirmed
                self.audit.flush()
                rows += [dict(e, kind="unconfirmed", origin="local", voided_by=None)
                         for e in self.audit.entries(since=midnight.astimezone(UTC), kinds=("timeout",))]
                rows.sort(key=lambda r: r["at"], reverse=True)
            return [dict(r, reward=rewards.get(r["reward_id"])) for r in rows]
        self._page(HISTORY, load)

    def open_sync(self) -> None:
        def load():
            info = self._read_status()
            have = self.ledger.store.current_list()
            if have is not None:
                info["list_issued_at"], info["list_codes"] = have.issued_at, have.code_count
            loading = importer.import_progress(self.ledger.store)
            if loading is not None:
                info["list_loading"] = {"version": loading.version, "percent": loading.percent}
            info["list_salt_wait"] = importer.salt_wait(self.ledger.store)
            return info
        self._page(SYNC, load)

    def open_diagnostics(self, keep_message: bool = False) -> None:
        message = self.staff_message if keep_message else ""

        def load():
            checks = []
            if self.diagnostics is not None:
                checks.extend(self.diagnostics())
            if self.signals is not None and hasattr(self.signals, "describe"):
                info = self.signals.describe()
                found = [f"LED {info['led']}" if info.get("led") else "",
                         f"buzzer {info['buzzer']}" if info.get("buzzer") else "",
                         "confirm button" if info.get("button") else ""]
                text = info.get("problem") or ", ".join(f for f in found if f) or "none configured"
                checks.append(("gpio", "WARN" if info.get("problem") else "OK", text, ""))
            if self.printer is not None and hasattr(self.printer, "pending"):
                checks.append(("receipts", "WARN" if self.printer.pending() else "OK",
                               f"{len(self.printer.pending())} receipt(s) waiting to print", ""))
            return checks
        self._page(DIAGNOSTICS, load)
        self.staff_message = message

    def retry_receipts(self) -> None:
        """Diagnostics: print the receipts waiting in the queue (oldest first)."""
        if self.screen != DIAGNOSTICS or self.printer is None or not hasattr(self.printer, "retry_pending"):
            return
        self.staff_message = tr(N_("Printing waiting receipts…"), self.lang)
        self._changed()
        self.print_worker.submit(self.printer.retry_pending, self._retried)

    def _retried(self, outcomes, error) -> None:
        outcomes = outcomes or []
        printed = sum(1 for o in outcomes if o.ok)
        if error is not None or (outcomes and not outcomes[-1].ok):
            problem = str(error) if error is not None else outcomes[-1].message
            self.status.update(printer="queued", printer_message=problem)
        elif outcomes:
            self.status.update(printer="printed", printer_message="")
        self.staff_message = tr(N_("Receipts printed: {n}"), self.lang).format(n=printed)
        if self.screen == DIAGNOSTICS:
            self.open_diagnostics(keep_message=True)
        else:
            self._changed()

    def close(self) -> None:
        """Stop background threads (the app calls this on exit)."""
        for worker in {id(self.worker): self.worker, id(self.print_worker): self.print_worker}.values():
            try:
                worker.close()
            except KioskError:
                pass
