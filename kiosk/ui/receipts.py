"""The receipt printer as the screens see it: printing, printed, queued.

:class:`Receipts` prints on the controller's ``print_worker`` and keeps what Done,
Undo and the status line show (``print_state``/``print_message`` and the printer
part of ``status`` on the :class:`~kiosk.ui.controller.Controller`).
"""

from typing import TYPE_CHECKING

from kiosk.ui.i18n import N_, tr
from kiosk.ui.names import DIAGNOSTICS, DONE, STAFF_SCREENS

if TYPE_CHECKING:
    from kiosk.ui.controller import Controller


class Receipts:
    def __init__(self, ctl: "Controller"):
        self.ctl = ctl

    def print(self, redemption_id: str, *, reprint: bool) -> None:
        c = self.ctl
        if c.printer is None:
            c.print_state, c.print_message = "no_printer", ""
            c._changed()
            return
        c.print_state, c.print_message = "printing", ""
        lang = c.lang
        c.print_worker.submit(
            lambda: c.printer.print_redemption(redemption_id, reprint=reprint, lang=lang),
            lambda outcome, error: self.printed(redemption_id, outcome, error))
        c._changed()

    def printed(self, redemption_id: str, outcome, error) -> None:
        c = self.ctl
        if error is not None:
            state, message = "failed", str(error)
        else:
            state, message = outcome.state, outcome.message
        c.status.update(printer=state, printer_message=message)
        current = c.redeemed is not None and c.redeemed.redemption_id == redemption_id
        if current or c.screen in STAFF_SCREENS:
            c.print_state, c.print_message = state, message
        if current and c.screen == DONE and state != "printed":
            c.deadline = c.now() + c.settings.done_timeout * 2  # staff must see it
        c._changed()

    def retry(self) -> None:
        """Diagnostics: print the receipts waiting in the queue (oldest first)."""
        c = self.ctl
        if c.screen != DIAGNOSTICS or c.printer is None:
            return
        c.staff_message = tr(N_("Printing waiting receipts…"), c.lang)
        c._changed()
        c.print_worker.submit(c.printer.retry_pending, self._retried)

    def _retried(self, outcomes, error) -> None:
        c = self.ctl
        outcomes = outcomes or []
        printed = sum(1 for o in outcomes if o.ok)
        if error is not None or (outcomes and not outcomes[-1].ok):
            problem = str(error) if error is not None else outcomes[-1].message
            c.status.update(printer="queued", printer_message=problem)
        elif outcomes:
            c.status.update(printer="printed", printer_message="")
        c.staff_message = tr(N_("Receipts printed: {n}"), c.lang).format(n=printed)
        if c.screen == DIAGNOSTICS:
            c.staff.open_diagnostics(keep_message=True)
        else:
            c._changed()
