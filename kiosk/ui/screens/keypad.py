"""Type a code: the fallback when a QR will not scan or there is no camera."""

from kivy.properties import StringProperty

from kiosk.ui.screens.base import KioskScreen


class KeypadScreen(KioskScreen):
    code = StringProperty("")

    def refresh(self, controller) -> None:
        self.code = controller.code_text
