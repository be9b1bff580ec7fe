"""The screen registry: one .kv and one small class per screen, named by state.

Each screen module ``kiosk/ui/screens/NAME.py`` defines a class derived from
:class:`KioskScreen` and its layout lives in ``NAME.kv`` beside it. Screens render
the controller's state in ``refresh`` and call controller methods from their
handlers; they hold no logic of their own.
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


def create_all(controller) -> list:
    """Load every screen's .kv and return one instance of each, named by state."""
    from kivy.lang import Builder

    screens = []
    for name, (module, cls_name) in SCREENS.items():
        kv = HERE / f"{module}.kv"
        if str(kv) not in Builder.files:
            Builder.load_file(str(kv))
        cls = getattr(importlib.import_module(f"kiosk.ui.screens.{module}"), cls_name)
        screens.append(cls(name=name, controller=controller))
    return screens
