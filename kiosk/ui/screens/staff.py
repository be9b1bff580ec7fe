"""The staff menu (behind the PIN)."""

from kiosk.ui.screens.base import KioskScreen


class StaffScreen(KioskScreen):
    pass
