"""The screen registry: one .kv and one small class per screen, named by state.

Each screen module ``kiosk/ui/screens/NAME.py`` defines a class derived from
:class:`KioskScreen` and its layout lives in ``NAME.kv`` beside it. Screens render
the controller's state in ``refresh`` and call controller methods from their
handlers; they hold no logic of their own.

Only the customer screens (:data:`KEPT`) exist all the time, so a verdict never
waits for a screen to be built; the staff and setup screens are built when first
shown and dropped when the counter is back on a customer screen (the app does
both, :meth:`kiosk.ui.app.KioskApp.show`): about 8 MB and a third of the start
time that a counter needs only while staff use the menu.
"""

import importlib
from pathlib import Path

from kiosk.ui import controller as c

HERE = Path(__file__).resolve().parent

# state name -> (module, class)
SCREENS = {
    c.IDLE: ("idle", "IdleScreen"),
    c.VERDICT: ("verdict", "VerdictScreen"),
    c.DONE: ("done", "DoneScreen"),
    c.PIN: ("pin", "PinScreen"),
    c.STAFF: ("staff", "StaffScreen"),
    c.KEYPAD: ("keypad", "KeypadScreen"),
    c.UNDO: ("undo", "UndoScreen"),
    c.HISTORY: ("history", "HistoryScreen"),
    c.SYNC: ("sync", "SyncScreen"),
    c.DIAGNOSTICS: ("diagnostics", "DiagnosticsScreen"),
    c.NOT_PROVISIONED: ("not_provisioned", "NotProvisionedScreen"),
}


KEPT = (c.IDLE, c.VERDICT, c.DONE)


def create(name: str, controller):
    """One instance of the screen for state ``name`` (its .kv loaded once)."""
    from kivy.lang import Builder

    module, cls_name = SCREENS[name]
    kv = HERE / f"{module}.kv"
    if str(kv) not in Builder.files:
        Builder.load_file(str(kv))
    cls = getattr(importlib.import_module(f"kiosk.ui.screens.{module}"), cls_name)
    return cls(name=name, controller=controller)
