"""The staff session: the PIN, the staff menu and its pages.

:class:`StaffSession` handles the PIN keypad (with its lock-out), the code keypad,
Undo (asking first) and reprint, today's history, the sync page and Diagnostics.
Each page's data is read on the controller's worker by the functions below and
kept in the controller's ``page_data``; the page shows ``staff_message``.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from datetime import time as dtime
from typing import TYPE_CHECKING

from kiosk.core import importer
from kiosk.ui import pin as pins
from kiosk.ui.i18n import N_, tr
from kiosk.ui.names import DIAGNOSTICS, HISTORY, KEYPAD, PIN, STAFF, SYNC, UNDO

if TYPE_CHECKING:
    from kiosk.ui.controller import Controller

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
    def __init__(self, ctl: "Controller"):
        self.ctl = ctl

    # -- PIN --------------------------------------------------------------------
    def open(self) -> None:
        c = self.ctl
        c.pin_text, c.pin_message = "", ""
        if not c.settings.pin_hash:
            c.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), c.lang)
        c._go(PIN, c.settings.staff_timeout)

    def pin_key(self, key: str) -> None:
        c = self.ctl
        c.activity()
        if key == "back":
            c.pin_text = c.pin_text[:-1]
        elif key == "ok":
            self._check_pin()
            return
        elif key.isdigit() and len(c.pin_text) < pins.MAX_DIGITS:
            c.pin_text += key
        c._changed()

    def _check_pin(self) -> None:
        c = self.ctl
        now = c.now()
        if now < c.locked_until:
            wait = int(c.locked_until - now) + 1
            c.pin_message = tr(N_("Too many tries: wait {n} s"), c.lang).format(n=wait)
        elif not c.settings.pin_hash:
            c.pin_message = tr(N_("No staff PIN is set. Technician: kiosk pin-hash"), c.lang)
        elif pins.verify(c.pin_text, c.settings.pin_hash):
            c.pin_tries, c.pin_text = 0, ""
            self.menu()
            return
        else:
            c.pin_tries += 1
            c.pin_message = tr(N_("Wrong PIN"), c.lang)
            if c.pin_tries >= c.settings.max_pin_tries:
                c.pin_tries, c.locked_until = 0, now + c.settings.pin_lockout
        c.pin_text = ""
        c._changed()

    # -- menu and pages -----------------------------------------------------------
    def menu(self) -> None:
        c = self.ctl
        c.staff_message, c.page_data = "", None
        c._go(STAFF, c.settings.staff_timeout)

    def _page(self, screen: str, load: Callable[[], object] | None) -> None:
        c = self.ctl
        c.staff_message, c.page_data, c.print_state = "", None, ""
        c.undo_asking = False
        c._go(screen, c.settings.staff_timeout)
        if load is not None:
            c.worker.submit(load, lambda data, error: self._page_loaded(screen, data, error))

    def _page_loaded(self, screen: str, data, error) -> None:
        c = self.ctl
        if c.screen != screen:
            return
        c.page_data = data if error is None else None
        if error is not None:
            c.staff_message = str(error)
        c._changed()

    def open_keypad(self) -> None:
        self.ctl.code_text = ""
        self._page(KEYPAD, None)

    def code_key(self, key: str) -> None:
        c = self.ctl
        c.activity()
        if key == "ok":
            code = c.code_text.strip()
            if code:
                c.scan(code, source="keypad")
            return
        if key == "back":
            c.code_text = c.code_text[:-1]
        elif key == "clear":
            c.code_text = ""
        elif len(key) == 1 and len(c.code_text) < MAX_CODE:
            c.code_text += key
        c._changed()

    # -- Undo and reprint -----------------------------------------------------------
    def open_undo(self) -> None:
        self._page(UNDO, lambda: last_redemption(self.ctl.ledger))

    def undo_last(self) -> None:
        c = self.ctl
        row = c.page_data
        if c.screen != UNDO or not row or row.get("voided_by"):
            return
        c.undo_asking = True
        c._changed()

    def undo_keep(self) -> None:
        self.ctl.undo_asking = False
        self.ctl._changed()

    def undo_really(self) -> None:
        c = self.ctl
        row = c.page_data
        if c.screen != UNDO or not c.undo_asking or not row or row.get("voided_by"):
            return
        c.undo_asking = False
        c.worker.submit(lambda: c.ledger.void(row["id"], staff="staff-menu"),
                        lambda event, error: self._undone(row, event, error))
        c._changed()

    def _undone(self, row, event, error) -> None:
        c = self.ctl
        if error is not None:
            c._audit("undo_failed", redemption_id=row["id"], masked_code=row.get("masked_code"),
                     note=str(error)[:200])
            c.staff_message = tr(N_("Cannot undo: {reason}"), c.lang).format(reason=error)
        else:
            c._audit("undo", redemption_id=row["id"], code_hash=row.get("code_hash"),
                     masked_code=row.get("masked_code"), reward_id=row.get("reward_id"),
                     source="staff-menu")
            c.staff_message = tr(N_("Undone: the reward can be used again"), c.lang)
            c._signal("idle")
        if c.screen == UNDO:
            c.worker.submit(lambda: last_redemption(c.ledger),
                            lambda data, err: self._page_loaded(UNDO, data, err))
        c._changed()

    def reprint_last(self) -> None:
        c = self.ctl
        row = c.page_data
        if c.screen != UNDO or not row or row.get("voided_by") or c.undo_asking:
            return
        c.receipts.print(row["id"], reprint=True)

    # -- history, sync, diagnostics -----------------------------------------------------
    def open_history(self) -> None:
        self._page(HISTORY, lambda: todays_history(self.ctl.ledger, self.ctl.audit))

    def open_sync(self) -> None:
        c = self.ctl
        self._page(SYNC, lambda: sync_page(c.ledger.store, c.status_line.read()))

    def open_diagnostics(self, keep_message: bool = False) -> None:
        """The doctor's checks (``diagnostics``: kiosk.doctor.held.in_ui from parts)."""
        c = self.ctl
        message = c.staff_message if keep_message else ""
        diagnostics = c.diagnostics
        self._page(DIAGNOSTICS, lambda: list(diagnostics()) if diagnostics is not None else [])
        c.staff_message = message
