"""Done: redeemed, the receipt's state; returns to idle by itself.

Done is drawn light (dark green ink on paper white) so it can never be mistaken for
the green Ready screen, and its button sits at the left, away from where Confirm
was; the controller also ignores taps on it for ``TAP_GUARD`` seconds.
"""

from kivy.properties import BooleanProperty, StringProperty

from kiosk.core.bundle import reward_title
from kiosk.ui.i18n import N_, tr
from kiosk.ui.present import printer_problem
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.screens.verdict import notice

RECEIPT = {
    "printing": N_("Printing receipt…"),
    "printed": N_("Receipt printed"),
    "queued": N_("Receipt not printed: it waits in the print queue"),
    "failed": N_("Receipt not printed: printer problem"),
    "no_printer": N_("No receipt printer"),
}
HEADLINE = N_("Redeemed")
AGAIN = N_("Redeemed just now here")


class DoneScreen(KioskScreen):
    headline = StringProperty("")
    title = StringProperty("")
    receipt = StringProperty("")
    detail = StringProperty("")
    notice = StringProperty("")
    guarded = BooleanProperty(False)

    def refresh(self, controller) -> None:
        result, lang = controller.redeemed, controller.lang
        self.notice, self.guarded = notice(controller), controller.guarded
        if result is None:
            return
        self.headline = tr(AGAIN if controller.again else HEADLINE, lang)
        self.title = reward_title(result.reward, lang) or result.title
        state = controller.print_state
        self.receipt = tr(RECEIPT[state], lang) if state in RECEIPT and not controller.again else ""
        problem = printer_problem(controller.print_message, lang) if state in ("queued", "failed") else ""
        code = tr("Code …{code}", lang).format(code=result.masked_code or "?")
        self.detail = f"{code} · {problem}" if problem and not controller.again else code
