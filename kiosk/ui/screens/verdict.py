"""Verdict: the reward (biggest thing on screen) and Confirm, or why not."""

from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty

from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.widgets import tone_colour, tone_text


class VerdictScreen(KioskScreen):
    bg = ListProperty(tone_colour("idle"))
    fg = ListProperty(tone_text("idle"))
    icon = StringProperty("check")
    tone = StringProperty("")
    reason = StringProperty("")
    title = StringProperty("")
    type_line = StringProperty("")
    detail = StringProperty("")
    next_step = StringProperty("")
    can_confirm = BooleanProperty(False)
    busy = BooleanProperty(False)
    token = NumericProperty(0)

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
        self.bg = list(tone_colour(self.tone))
        self.fg = list(tone_text(self.tone))
        self.busy, self.token = controller.confirming, controller.token
