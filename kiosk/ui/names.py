"""The screens' names: the controller's states (one .kv and one class each, see
:mod:`kiosk.ui.screens`)."""

IDLE, VERDICT, DONE, PIN, STAFF = "idle", "verdict", "done", "pin", "staff"
KEYPAD, UNDO, HISTORY, SYNC, DIAGNOSTICS = "keypad", "undo", "history", "sync", "diagnostics"
NOT_PROVISIONED = "not_provisioned"
STAFF_SCREENS = (PIN, STAFF, KEYPAD, UNDO, HISTORY, SYNC, DIAGNOSTICS)
