"""The receipt printer as the screens see it: printing, printed, queued.

:class:`Receipts` prints on the controller's ``print_worker`` and keeps what Done,
Undo and the status line show (``print_state``/``print_message`` and the printer
part of ``status`` in the :class:`~kiosk.ui.state.ScreenState`).
"""

from collections.abc import Callable

from kiosk.ui.names import DONE, STAFF_SCREENS
from kiosk.ui.state import ScreenState


class Receipts:
    def __init__(self, state: ScreenState):
        self.state = state

    def print(self, redemption_id: str, *, reprint: bool) -> None:
        s = self.state
        if s.printer is None:
            s.print_state, s.print_message = "no_printer", ""
            s.changed()
            return
        s.print_state, s.print_message = "printing", ""
        lang = s.lang
        s.print_worker.submit(
            lambda: s.printer.print_redemption(redemption_id, reprint=reprint, lang=lang),
            lambda outcome, error: self.printed(redemption_id, outcome, error))
        s.changed()

    def printed(self, redemption_id: str, outcome, error) -> None:
        s = self.state
        if error is not None:
            state, message = "failed", str(error)
        else:
            state, message = outcome.state, outcome.message
        s.status.update(printer=state, printer_message=message)
        current = s.redeemed is not None and s.redeemed.redemption_id == redemption_id
        if current or s.screen in STAFF_SCREENS:
            s.print_state, s.print_message = state, message
        if current and s.screen == DONE and state != "printed":
            s.deadline = s.now() + s.settings.done_timeout * 2  # staff must see it
        s.changed()

    def retry(self, then: Callable[[int], None]) -> None:
        """Print the receipts waiting in the queue (oldest first); ``then(printed)``."""
        s = self.state
        s.print_worker.submit(s.printer.retry_pending,
                              lambda outcomes, error: then(self._retried(outcomes, error)))

    def _retried(self, outcomes, error) -> int:
        s = self.state
        outcomes = outcomes or []
        if error is not None or (outcomes and not outcomes[-1].ok):
            problem = str(error) if error is not None else outcomes[-1].message
            s.status.update(printer="queued", printer_message=problem)
        elif outcomes:
            s.status.update(printer="printed", printer_message="")
        return sum(1 for o in outcomes if o.ok)
