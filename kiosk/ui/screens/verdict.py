"""Verdict: the reward (biggest thing on screen) and Confirm, or why not.

Confirm and Cancel remember the screen's token when the finger touches down and hand
it to the controller on release, so a tap always acts on the verdict it started on.
"""

from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty

from kiosk.ui.i18n import N_, tr
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.widgets import tone_colour, tone_text

WAITING = N_("Next customer waiting: finish this one first")
WARNING = N_("Not confirmed yet: Confirm or Cancel ({n} s)")


def notice(controller) -> str:
    """The strip above a customer screen: the timeout warning, or a held newcomer."""
    if controller.warning:
        return tr(WARNING, controller.lang).format(n=controller.warning)
    if controller.waiting is not None:
        return tr(WAITING, controller.lang)
    return ""


class VerdictScreen(KioskScreen):
    bg = ListProperty(tone_colour("idle"))
    fg = ListProperty(tone_text("idle"))
    icon = StringProperty("check")
    tone = StringProperty("")
    reason = StringProperty("")
    title = StringProperty("")
    type_line = StringProperty("")
    detail = StringProperty("")
    notice = StringProperty("")
    next_step = StringProperty("")
    can_confirm = BooleanProperty(False)
    busy = BooleanProperty(False)
    token = NumericProperty(0)
    down_token = NumericProperty(-1)  # the token when the finger touched down

    def refresh(self, controller) -> None:
        view = controller.view()
        if view is None:  # an error before any verdict: only the message
            self.tone, self.icon, self.title, self.type_line = "error", "alert", "", ""
            self.reason, self.detail, self.can_confirm = controller.record_error, "", False
            self.next_step = ""
        else:
            self.tone, self.icon, self.reason = view.tone, view.icon, view.reason
            self.title, self.type_line = view.title, view.type_line
            self.detail = controller.record_error or view.detail
            self.can_confirm = view.can_confirm
            self.next_step = "" if controller.record_error else view.next_step
            if controller.record_error:
                self.tone, self.icon = "error", "alert"
        flash = controller.warning % 2 == 1  # the countdown flashes once a second
        self.bg = list(tone_colour("warn" if flash else self.tone))
        self.fg = list(tone_text("warn" if flash else self.tone))
        self.notice = notice(controller)
        self.busy, self.token = controller.confirming, controller.token

    def pressed(self) -> None:
        self.down_token = self.token

    def confirm_released(self) -> None:
        token, self.down_token = self.down_token, -1
        if token >= 0:
            self.controller.confirm(token)

    def cancel_released(self) -> None:
        token, self.down_token = self.down_token, -1
        if token >= 0:
            self.controller.cancel(token)
