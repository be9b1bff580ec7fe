"""The doctor inside the running UI (the staff menu's Diagnostics page).

The UI already holds the camera, the printer and the GPIO pins open, so their
checks are not run again: the lines for the GPIO signals and the print queue are
made from the parts the UI holds instead, with the doctor's own wording.
"""

from kiosk.doctor import OK, WARN, Check, run_checks
from kiosk.doctor.devices import gpio_check, receipts_waiting
from kiosk.i18n import speaking


def in_ui(cfg, *, signals=None, printer=None, lang: str | None = None) -> list[Check]:
    """The checks for the Diagnostics page: the doctor's, without opening the camera,
    the printer or the GPIO pins again (``signals``: kiosk.hardware.signals.Signals,
    ``printer``: kiosk.printing.PrintService, each None when the kiosk has none), in
    ``lang`` (the screen's language; default the configured one)."""
    lang = lang or cfg.language
    checks = run_checks(cfg, skip={"camera_and_decode", "gpio"}, probe_printer=False, lang=lang)
    with speaking(lang):
        if signals is not None:
            checks.append(gpio_check(signals.describe()))
        if printer is not None:
            count = len(printer.pending())
            checks.append(Check("receipts", WARN if count else OK, receipts_waiting(count)))
    return checks
