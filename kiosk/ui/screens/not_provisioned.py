"""Not provisioned: no config or no trusted key; tells the technician what to do."""

from kivy.properties import StringProperty

from kiosk.i18n import say
from kiosk.ui.screens.base import KioskScreen


class NotProvisionedScreen(KioskScreen):
    problem = StringProperty("")
    setup = StringProperty("")

    def refresh(self, controller) -> None:
        self.problem = say(controller.problem, controller.lang)  # a Msg from ui.runner: in the screen's language
        self.setup = controller.setup_message
