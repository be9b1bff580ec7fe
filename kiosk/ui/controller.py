"""The kiosk's state machine: what is on screen and what a tap or a scan does.

Screens call only the public methods here; the controller calls the ledger, the
receipt printer and the signals (LED/buzzer) it was given, so tests pass real fakes.
Every write to SQLite (confirm, undo) and every page load runs on ``worker`` (one
thread, in order) and printing on ``print_worker``; both report back through
``post`` on the main thread. Checking a scan is a read: with ``checker`` (a Ledger
on its own connection) it runs in place, so the verdict is drawn in the same frame.

Rules staff can rely on (docs/ui.md):

* Confirm records at most one redemption per verdict: the first tap (or button
  press) starts it, every further tap is ignored until the verdict is replaced.
* A scan while a verdict is shown: the same code is ignored; a different code
  replaces the verdict, unless a confirm is in progress (then it is ignored and the
  customer simply scans again). A scan on the Done screen starts the next customer.
  Scans are ignored while the staff menu is open (staff type codes there).
* Every screen except Idle times out back to Idle; leaving a customer's screens
  returns the kiosk to the default language.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from datetime import time as dtime

from kiosk.core import importer
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


class Controller:
    def __init__(self, ledger=None, *, settings: UiSettings | None = None, printer=None,
                 signals=None, worker=None, print_worker=None,
                 post: Callable[[Callable[[], None]], None] | None = None,
                 now: Callable[[], float] = time.monotonic, status_reader=None,
                 diagnostics=None, problem: str = "", checker=None, setup=None):
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
        self.listeners: list[Callable[[Controller], None]] = []
        self.default_lang = self.settings.language if self.settings.language in LANGUAGES else "en"
        self.lang = self.default_lang
        self.screen = NOT_PROVISIONED if ledger is None else IDLE
        self.result = None          # the Result on the verdict screen
        self.token = 0              # changes whenever a new verdict is shown
        self.confirming = False
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
        if self.deadline is not None and now >= self.deadline and not self.confirming:
            self.go_idle()
        elif self.screen == IDLE and self.lang_deadline is not None and now >= self.lang_deadline:
            self.lang_deadline = None
            self.set_language(self.default_lang)
        if self.provisioned and now >= self._next_status:
            self.refresh_status()

    def go_idle(self) -> None:
        """Back to the attract screen; the next customer starts in the default language."""
        self.result, self.redeemed, self.confirming, self.record_error = None, None, False, ""
        self.pin_text = self.code_text = self.staff_message = ""
        self.page_data, self.lang_deadline = None, None
        self.lang = self.default_lang
        self._signal("idle")
        self._go(IDLE if self.provisioned else NOT_PROVISIONED, None)

    # -- status line --------------------------------------------------------
    def refresh_status(self) -> None:
        self._next_status = self.now() + STATUS_EVERY
        self.worker.submit(self._read_status, self._status_read)

    def _read_status(self) -> dict:
        info: dict = {}
        have = importer.current(self.ledger.store)
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

    # -- customer flow ------------------------------------------------------
    def scan(self, payload: str, source: str = "camera") -> bool:
        """A decoded QR payload (or a typed code). Returns False when it is ignored."""
        self.scans_seen += 1
        if not self.provisioned:
            return self._setup_scan(payload)
        if self.confirming:
            return False
        if self.screen in STAFF_SCREENS and source != "keypad":
            return False
        if self.screen == VERDICT and self.result is not None and payload == self.result.payload:
            return False
        self._check_seq += 1
        seq, lang = self._check_seq, self.lang
        if self.checker is not None:  # a read in WAL mode: ~1 ms, never waits for writers
            try:
                result, error = self.checker.check(payload, lang=lang), None
            except Exception as exc:
                result, error = None, exc
            self._checked(seq, source, result, error)
            return True
        self.worker.submit(lambda: self.ledger.check(payload, lang=lang),
                           lambda result, error: self._checked(seq, source, result, error))
        return True

    def _checked(self, seq: int, source: str, result, error) -> None:
        if seq != self._check_seq or self.confirming:
            return
        if self.screen in STAFF_SCREENS and source != "keypad":
            return
        if error is not None:
            self._fail(tr(N_("Could not check the code: {error}"), self.lang).format(error=error))
            return
        self.result, self.record_error = result, ""
        self.token += 1
        self.verdicts_shown += 1
        view = self.view()
        self._signal(view.signal)
        ready = result.verdict is Verdict.READY
        self._go(VERDICT, self.settings.verdict_timeout if ready else self.settings.refusal_timeout)

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
        """Staff confirm (touch or physical button): records the redemption once."""
        if self.screen != VERDICT or self.confirming or self.result is None:
            return False
        if self.result.verdict is not Verdict.READY or (token is not None and token != self.token):
            return False
        self.confirming, self.record_error = True, ""
        self.deadline = None
        payload, lang = self.result.payload, self.lang
        self._changed()
        self.worker.submit(lambda: self.ledger.confirm(payload, lang=lang), self._confirmed)
        return True

    def button_pressed(self) -> None:
        """The physical confirm button (arrives via Clock from the GPIO thread)."""
        self.confirm(source="button")

    def _confirmed(self, result, error) -> None:
        self.confirming = False
        if error is not None:
            self._fail(tr(N_("Not recorded: {error}. Nothing was redeemed; try again."),
                          self.lang).format(error=error))
            return
        if result.verdict is not Verdict.REDEEMED:  # e.g. redeemed next door a second ago
            self._checked(self._check_seq, "confirm", result, None)
            return
        self.redeemed, self.result = result, None
        self.token += 1
        self._signal("redeemed")
        self._go(DONE, self.settings.done_timeout)
        self._print(result.redemption_id, reprint=False)

    def cancel(self) -> None:
        """Cancel on the verdict screen, or Next on the Done screen."""
        if not self.confirming:
            self.go_idle()

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
        have = importer.current(self.ledger.store)
        if row is not None and have is not None:
            row = dict(row, reward=have.rewards.get(row["reward_id"]))
        return row

    def open_undo(self) -> None:
        self._page(UNDO, self._last_redemption)

    def undo_last(self) -> None:
        row = self.page_data
        if self.screen != UNDO or not row or row.get("voided_by"):
            return
        self.worker.submit(lambda: self.ledger.void(row["id"], staff="staff-menu"), self._undone)

    def _undone(self, event, error) -> None:
        if error is not None:
            self.staff_message = tr(N_("Cannot undo: {reason}"), self.lang).format(reason=error)
        else:
            self.staff_message = tr(N_("Undone: the reward can be used again"), self.lang)
            self._signal("idle")
        if self.screen == UNDO:
            self.worker.submit(self._last_redemption,
                               lambda data, err: self._page_loaded(UNDO, data, err))
        self._changed()

    def reprint_last(self) -> None:
        """Reprint the last local redemption's receipt (from the Undo page)."""
        row = self.page_data
        if self.screen != UNDO or not row:
            return
        self._print(row["id"], reprint=True)

    def open_history(self) -> None:
        midnight = datetime.combine(datetime.now().date(), dtime.min).astimezone()

        def load():
            have = importer.current(self.ledger.store)
            rewards = have.rewards if have is not None else {}
            rows = self.ledger.history(since=midnight.astimezone(UTC), limit=200)
            return [dict(r, reward=rewards.get(r["reward_id"])) for r in rows]
        self._page(HISTORY, load)

    def open_sync(self) -> None:
        def load():
            info = self._read_status()
            have = importer.current(self.ledger.store)
            if have is not None:
                info["list_issued_at"], info["list_codes"] = have.issued_at, have.code_count
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
