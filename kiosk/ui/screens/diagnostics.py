"""Diagnostics: the same checks as ``kiosk doctor`` plus camera and printer state."""

from kivy.properties import StringProperty

from kiosk.ui.i18n import tr
from kiosk.ui.screens.base import KioskScreen


def check_lines(checks, status: dict, lang: str) -> list[str]:
    camera_ok = status.get("camera") != "missing"
    lines = [f"{'OK' if camera_ok else 'FAIL'}  {tr('Camera', lang)}: "
             + (tr("working", lang) if camera_ok else status.get("camera_message", ""))]
    printer = status.get("printer") or "-"
    message = status.get("printer_message") or ""
    mark = "WARN" if printer in ("queued", "failed") else "OK"
    lines.append(f"{mark}  {tr('Printer', lang)}: {printer} {message}".rstrip())
    lines += [f"WARN  {problem}" for problem in status.get("problems", [])]
    for check in checks or []:
        name, state, message, hint = _fields(check)
        lines.append(f"{state}  {name}: {message}" + (f" ({hint})" if hint else ""))
    return lines


def _fields(check) -> tuple:
    if isinstance(check, tuple):
        return check
    return check.name, check.status, check.message, getattr(check, "hint", "")


class DiagnosticsScreen(KioskScreen):
    body = StringProperty("")
    message = StringProperty("")

    def refresh(self, controller) -> None:
        checks, lang = controller.page_data, controller.lang
        lines = check_lines(checks, controller.status, lang)
        if checks is None:
            lines.append(tr("Loading…", lang))
        self.body = "\n".join(lines)
        self.message = controller.staff_message
