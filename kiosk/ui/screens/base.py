"""The base of every screen: knows its controller, redraws on ``refresh``."""

from kivy.properties import ObjectProperty
from kivy.uix.screenmanager import Screen


class KioskScreen(Screen):
    controller = ObjectProperty(None, allownone=True, rebind=True)

    def refresh(self, controller) -> None:
        """Show the controller's current state (called on the main thread)."""
