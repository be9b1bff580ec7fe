"""The staff session: the PIN, the staff menu and its pages.

:class:`StaffSession` handles the PIN keypad (with its lock-out), the code keypad,
Undo (asking first) and reprint, today's history, the sync page and Diagnostics.
Each page's data is read on the worker by the functions below and kept in the
screen state's ``page_data``; the page shows ``staff_message``.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from datetime import time as dtime

from kiosk.core import importer
from kiosk.i18n import say
from kiosk.ui import pin as pins
from kiosk.ui.i18n import N_, tr
from kiosk.ui.names import DIAGNOSTICS, HISTORY, KEYPAD, PIN, STAFF, SYNC, UNDO
from kiosk.ui.receipts import Receipts
from kiosk.ui.state import ScreenState
from kiosk.ui.status import StatusLine

MAX_CODE = 40  # characters typed on the code keypad


# -- the pages' data (read on the worker) -------------------------------------
def last_redemption(ledger) -> dict | None:
    """The last redemption recorded here, with its reward (the Undo page)."""
    row = ledger.last_local_redemption()
    have = ledger.store.current_list()
    if row is not None and have is not None:
        row = dict(row, reward=have.rewards.get(row["reward_id"]))
    return row


def todays_history(ledger, audit) -> list[dict]:
    """Today's redemptions and undos, and the ready verdicts nobody confirmed."""
    midnight = datetime.combine(datetime.now().date(), dtime.min).astimezone()
    have = ledger.store.current_list()
    rewards = have.rewards if have is not None else {}
    rows = ledger.history(since=midnight.astimezone(UTC), limit=200)
    if audit is not None:  # ready verdicts nobody confirmed
        audit.flush()
        rows += [dict(e, kind="unconfirmed", origin="local", voided_by=None)
                 for e in audit.entries(since=midnight.astimezone(UTC), kinds=("timeout",))]
        rows.sort(key=lambda r: r["at"], reverse=True)
    return [dict(r, reward=rewards.get(r["reward_id"])) for r in rows]


def sync_page(store, info: dict) -> dict:
    """The sync page: the status line's ``info`` plus the list's details and an
    import in progress or waiting for its salt."""
    have = store.current_list()
    if have is not None:
        info["list_issued_at"], info["list_codes"] = have.issued_at, have.code_count
    loading = importer.import_progress(store)
    if loading is not None:
        info["list_loading"] = {"version": loading.version, "percent": loading.percent}
    info["list_salt_wait"] = importer.salt_wait(store)
    return info


class StaffSession:
    def __init__(self, state: ScreenState, receipts: Receipts, status_line: StatusLine, *,
                 scan: Callable[..., bool]):
        self.state, self.receipts, self.status_line = state, receipts, status_line
        self.scan = scan  # a typed code goes where a scanned one goes (the customer flow)

    # -- PIN --------------------------------------------------------------------
    def open(self) -> None:
        s = self.state
        s.pin_text, s.pin_message = "", ""
        if not s.settings.pin_hash:
            s.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), s.lang)
        s.go(PIN, s.settings.staff_timeout)

    def pin_key(self, key: str) -> None:
        s = self.state
        s.activity()
        if key == "back":
            s.pin_text = s.pin_text[:-1]
        elif key == "ok":
            self._check_pin()
            return
        elif key.isdigit() and len(s.pin_text) < pins.MAX_DIGITS:
            s.pin_text += key
        s.changed()

    def _check_pin(self) -> None:
        s = self.state
        now = s.now()
        if now < s.locked_until:
            wait = int(s.locked_until - now) + 1
            s.pin_message = tr(N_("Too many tries: wait {n} s"), s.lang).format(n=wait)
        elif not s.settings.pin_hash:
            s.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), s.lang)
        elif pins.verify(s.pin_text, s.settings.pin_hash):
            s.pin_tries, s.pin_text = 0, ""
            self.menu()
            return
        else:
            s.pin_tries += 1
            s.pin_message = tr(N_("Wrong PIN"), s.lang)
            if s.pin_tries >= s.settings.max_pin_tries:
                s.pin_tries, s.locked_until = 0, now + s.settings.pin_lockout
        s.pin_text = ""
        s.changed()

    # -- menu and pages -----------------------------------------------------------
    def menu(self) -> None:
        s = self.state
        s.staff_message, s.page_data = "", None
        s.go(STAFF, s.settings.staff_timeout)

    def _page(self, screen: str, load: Callable[[], object] | None) -> None:
        s = self.state
        s.staff_message, s.page_data, s.print_state = "", None, ""
        s.undo_asking = False
        s.go(screen, s.settings.staff_timeout)
        if load is not None:
            s.worker.submit(load, lambda data, error: self._page_loaded(screen, data, error))

    def _page_loaded(self, screen: str, data, error) -> None:
        s = self.state
        if s.screen != screen:
            return
        s.page_data = data if error is None else None
        if error is not None:
            s.staff_message = str(error)
        s.changed()

    def open_keypad(self) -> None:
        self.state.code_text = ""
        self._page(KEYPAD, None)

    def code_key(self, key: str) -> None:
        s = self.state
        s.activity()
        if key == "ok":
            code = s.code_text.strip()
            if code:
                self.scan(code, source="keypad")
            return
        if key == "back":
            s.code_text = s.code_text[:-1]
        elif key == "clear":
            s.code_text = ""
        elif len(key) == 1 and len(s.code_text) < MAX_CODE:
            s.code_text += key
        s.changed()

    # -- Undo and reprint -----------------------------------------------------------
    def open_undo(self) -> None:
        self._page(UNDO, lambda: last_redemption(self.state.ledger))

    def undo_last(self) -> None:
        s = self.state
        row = s.page_data
        if s.screen != UNDO or not row or row.get("voided_by"):
            return
        s.undo_asking = True
        s.changed()

    def undo_keep(self) -> None:
        self.state.undo_asking = False
        self.state.changed()

    def undo_really(self) -> None:
        s = self.state
        row = s.page_data
        if s.screen != UNDO or not s.undo_asking or not row or row.get("voided_by"):
            return
        s.undo_asking = False
        s.worker.submit(lambda: s.ledger.void(row["id"], staff="staff-menu"),
                        lambda event, error: self._undone(row, event, error))
        s.changed()

    def _undone(self, row, event, error) -> None:
        s = self.state
        if error is not None:
            s.record_audit("undo_failed", redemption_id=row["id"], masked_code=row.get("masked_code"),
                     note=str(error)[:200])
            s.staff_message = tr(N_("Cannot undo: {reason}"), s.lang).format(reason=say(error, s.lang))
        else:
            s.record_audit("undo", redemption_id=row["id"], code_hash=row.get("code_hash"),
                     masked_code=row.get("masked_code"), reward_id=row.get("reward_id"),
                     source="staff-menu")
            s.staff_message = tr(N_("Undone: the reward can be used again"), s.lang)
            s.signal("idle")
        if s.screen == UNDO:
            s.worker.submit(lambda: last_redemption(s.ledger),
                            lambda data, err: self._page_loaded(UNDO, data, err))
        s.changed()

    def reprint_last(self) -> None:
        s = self.state
        row = s.page_data
        if s.screen != UNDO or not row or row.get("voided_by") or s.undo_asking:
            return
        self.receipts.print(row["id"], reprint=True)

    # -- history, sync, diagnostics -----------------------------------------------------
    def open_history(self) -> None:
        self._page(HISTORY, lambda: todays_history(self.state.ledger, self.state.audit))

    def open_sync(self) -> None:
        s = self.state
        self._page(SYNC, lambda: sync_page(s.ledger.store, self.status_line.read()))

    def open_diagnostics(self, keep_message: bool = False) -> None:
        """The doctor's checks (``diagnostics``: kiosk.doctor.held.in_ui, given by parts)."""
        s = self.state
        message = s.staff_message if keep_message else ""
        diagnostics = s.diagnostics
        self._page(DIAGNOSTICS, lambda: list(diagnostics(lang=s.lang)) if diagnostics is not None else [])
        s.staff_message = message

    def retry_receipts(self) -> None:
        """Diagnostics: print the receipts waiting in the queue (oldest first)."""
        s = self.state
        if s.screen != DIAGNOSTICS or s.printer is None:
            return
        s.staff_message = tr(N_("Printing waiting receipts…"), s.lang)
        s.changed()
        self.receipts.retry(self._retried)

    def _retried(self, printed: int) -> None:
        s = self.state
        s.staff_message = tr(N_("Receipts printed: {n}"), s.lang).format(n=printed)
        if s.screen == DIAGNOSTICS:
            self.open_diagnostics(keep_message=True)
        else:
            s.changed()
