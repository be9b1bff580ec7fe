"""Undo (within the void window) or reprint the last redemption made here."""

from datetime import UTC, datetime

from kivy.properties import BooleanProperty, StringProperty

from kiosk.core import timefmt
from kiosk.core.bundle import reward_title
from kiosk.ui.i18n import N_, short_time, tr
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.screens.done import RECEIPT

ASK = N_("Undo this redemption? The reward can then be used again.")


class UndoScreen(KioskScreen):
    info = StringProperty("")
    message = StringProperty("")
    can_undo = BooleanProperty(False)
    can_reprint = BooleanProperty(False)  # not once the redemption was undone
    asking = BooleanProperty(False)       # "are you sure?" (Yes, undo it / No, keep it)

    def refresh(self, controller) -> None:
        row, lang = controller.page_data, controller.lang
        self.can_reprint = bool(row) and not row["voided_by"]
        self.asking = controller.undo_asking
        self.can_undo = False
        if row is None:
            self.info = tr("Nothing to undo", lang)
        else:
            at = timefmt.parse(row["at"])
            window = controller.ledger.void_window
            self.can_undo = not row["voided_by"] and datetime.now(UTC) - at <= window
            title = reward_title(row.get("reward"), lang) or row["reward_id"] or "-"
            lines = [short_time(at, lang), f"{title} · …{row['masked_code'] or '?'}"]
            if row["voided_by"]:
                lines.append(tr("Undone", lang))
            elif not self.can_undo:
                lines.append(tr("Too late to undo (after {n} min)", lang).format(
                    n=int(window.total_seconds() // 60)))
            self.info = "\n".join(lines)
        printing = tr(RECEIPT[controller.print_state], lang) if controller.print_state in RECEIPT else ""
        self.message = tr(ASK, lang) if self.asking else (controller.staff_message or printing)
