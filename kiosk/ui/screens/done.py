"""Done: redeemed, the receipt's state; returns to idle by itself."""

from kivy.properties import StringProperty

from kiosk.core.bundle import reward_title
from kiosk.ui.i18n import N_, tr
from kiosk.ui.present import printer_problem
from kiosk.ui.screens.base import KioskScreen

RECEIPT = {
    "printing": N_("Printing receipt…"),
    "printed": N_("Receipt printed"),
    "queued": N_("Receipt not printed: it waits in the print queue"),
    "failed": N_("Receipt not printed: printer problem"),
    "no_printer": N_("No receipt printer"),
}


class DoneScreen(KioskScreen):
    title = StringProperty("")
    receipt = StringProperty("")
    detail = StringProperty("")

    def refresh(self, controller) -> None:
        result, lang = controller.redeemed, controller.lang
        if result is None:
            return
        self.title = reward_title(result.reward, lang) or result.title
        state = controller.print_state
        self.receipt = tr(RECEIPT[state], lang) if state in RECEIPT else ""
        problem = printer_problem(controller.print_message, lang) if state in ("queued", "failed") else ""
        code = tr("Code …{code}", lang).format(code=result.masked_code or "?")
        self.detail = f"{code} · {problem}" if problem else code
