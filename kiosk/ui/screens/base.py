"""The base of every screen: knows its controller, redraws on ``refresh``."""

from kivy.properties import ObjectProperty
from kivy.uix.screenmanager import Screen


class KioskScreen(Screen):
    controller = ObjectProperty(None, allownone=True, rebind=True)

    def refresh(self, controller) -> None:
        """Show the controller's current state (called on the main thread)."""

    def on_pre_enter(self, *_):
        """Texts off screen are not measured (see widgets.Fit): measure them now."""
        from kiosk.ui.widgets import Fit

        for widget in self.walk(restrict=True):
            if isinstance(widget, Fit):
                widget.fit()
