"""The staff PIN pad (the PIN itself is checked by the controller against a hash)."""

from kivy.properties import StringProperty

from kiosk.ui.i18n import tr
from kiosk.ui.screens.base import KioskScreen


class PinScreen(KioskScreen):
    dots = StringProperty("")
    message = StringProperty("")

    def refresh(self, controller) -> None:
        self.dots = "•" * len(controller.pin_text) or " "
        hint = controller.settings.extra.get("pin_hint")
        demo = tr("Demo PIN: {pin}", controller.lang).format(pin=hint) if hint else ""
        self.message = controller.pin_message or demo
