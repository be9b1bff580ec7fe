"""Idle / attract: what to do, where the camera is, language, a calm status line."""

from kivy.properties import BooleanProperty, StringProperty

from kiosk.ui.i18n import age, tr
from kiosk.ui.screens.base import KioskScreen


def status_text(c) -> str:
    """Offline/online and the code list's age, plus a camera note staff can read."""
    s, lang = c.status, c.lang
    parts = []
    if "online" in s:
        parts.append(tr("Online", lang) if s["online"] else tr("Offline", lang))
    if s.get("list_age_s") is not None:
        parts.append(tr("Codes updated {age} ago", lang).format(age=age(s["list_age_s"], lang)))
    elif c.provisioned:
        parts.append(tr("No code list yet", lang))
    if s.get("camera") == "missing":
        parts.append(tr("Camera off: staff can type your code", lang))
    if s.get("printer") in ("queued", "failed"):
        parts.append(tr("Printer needs attention", lang))
    return " · ".join(parts)


class IdleScreen(KioskScreen):
    status_text = StringProperty("")
    logo = StringProperty("")
    camera_off = BooleanProperty(False)  # no camera: point the customer at the staff

    def refresh(self, controller) -> None:
        self.status_text = status_text(controller)
        self.camera_off = controller.status.get("camera") == "missing"
        logo = controller.settings.logo
        self.logo = str(logo) if logo and logo.exists() else ""
        column, hint = self.ids.column, self.ids.hint
        want = 1 if controller.settings.camera_position == "top" else 3
        if column.children[::-1].index(hint) != want:
            column.remove_widget(hint)
            column.add_widget(hint, index=len(column.children) - want)

    def on_enter(self, *_):
        self.ids.hint.start()

    def on_leave(self, *_):
        self.ids.hint.stop()
