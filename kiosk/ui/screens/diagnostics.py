"""Diagnostics: the same checks as ``kiosk doctor`` plus camera and printer state, in
the staff's language and plain words (no paths, no timestamps: the technician's
details are in ``kiosk doctor``)."""

import re

from kivy.properties import NumericProperty, StringProperty

from kiosk.ui.i18n import N_, tr
from kiosk.ui.present import printer_problem
from kiosk.ui.screens.base import KioskScreen

PARTS = {
    "config": N_("Settings"), "database": N_("Database"), "code_list": N_("Code list"),
    "outbox": N_("Redemptions to send"), "sync": N_("Sync service"), "broker": N_("Server connection"),
    "camera": N_("Camera"), "decode": N_("QR reading"), "printer": N_("Printer settings"),
    "gpio": N_("Lights, buzzer and button"), "disk": N_("Storage space"), "clock": N_("Clock"),
    "temperature": N_("Temperature"), "throttling": N_("Power supply"), "receipts": N_("Receipts"),
}
STATES = {"OK": N_("fine"), "WARN": N_("needs attention"), "FAIL": N_("not working")}
MARKS = {"OK": "", "WARN": "!", "FAIL": "\u00d7"}  # "" = the translated "OK"


def _fields(check) -> tuple:
    if isinstance(check, tuple):
        return check
    return check.name, check.status, check.message, getattr(check, "hint", "")


def waiting_receipts(checks) -> int:
    """How many receipts wait in the print queue (from the controller's receipts line)."""
    for check in checks or []:
        name, _state, message, _hint = _fields(check)
        found = re.match(r"\s*(\d+)", message or "") if name == "receipts" else None
        if found:
            return int(found.group(1))
    return 0


def check_lines(checks, status: dict, lang: str) -> list[str]:
    def line(part: str, state: str, text: str) -> str:
        return f"{MARKS[state] or tr('OK', lang)}  {tr(part, lang)}: {text}"

    camera_ok = status.get("camera") != "missing"
    lines = [line(PARTS["camera"], "OK" if camera_ok else "FAIL",
                  tr("working", lang) if camera_ok else tr("not working, staff can type codes", lang))]
    printer = status.get("printer") or ""
    if printer in ("queued", "failed"):
        lines.append(line(N_("Printer"), "WARN", printer_problem(status.get("printer_message"), lang)))
    else:
        lines.append(line(N_("Printer"), "OK", tr("working", lang) if printer == "printed"
                          else tr("no receipt printed yet", lang)))
    if status.get("problems"):
        lines.append(line(N_("Devices"), "WARN", tr("some did not start", lang)))
    attention = bool(status.get("problems")) or not camera_ok or printer in ("queued", "failed")
    for check in checks or []:
        name, state, message, _hint = _fields(check)
        state = state if state in STATES else "WARN"
        part = PARTS.get(name, name)
        if name == "receipts":
            text = tr("waiting to print: {n}", lang).format(n=waiting_receipts([check]))
        else:
            text = tr(STATES[state], lang)
        lines.append(line(part, state, text))
        attention = attention or state != "OK"
    if attention:
        lines += ["", tr("Technician: run kiosk doctor on this kiosk for the details.", lang)]
    return lines


class DiagnosticsScreen(KioskScreen):
    body = StringProperty("")
    message = StringProperty("")
    waiting = NumericProperty(0)  # receipts in the print queue: the retry button shows then

    def refresh(self, controller) -> None:
        checks, lang = controller.page_data, controller.lang
        lines = check_lines(checks, controller.status, lang)
        if checks is None:
            lines.append(tr("Loading…", lang))
        self.body = "\n".join(lines)
        self.waiting = waiting_receipts(checks)
        self.message = controller.staff_message
