"""The doctor inside the running UI (the staff menu's Diagnostics page).

The UI already holds the camera, the printer and the GPIO pins open, so their
checks are not run again: the lines for the GPIO signals and the print queue are
made from the parts the UI holds instead.
"""

from kiosk.doctor import OK, WARN, Check, run_checks


def gpio_in_use(info: dict) -> Check:
    """The LED/buzzer/button line from the running signals' ``describe()``."""
    found = [f"LED {info['led']}" if info.get("led") else "",
             f"buzzer {info['buzzer']}" if info.get("buzzer") else "",
             "confirm button" if info.get("button") else ""]
    text = info.get("problem") or ", ".join(f for f in found if f) or "none configured"
    return Check("gpio", WARN if info.get("problem") else OK, text)


def receipts_waiting(count: int) -> Check:
    return Check("receipts", WARN if count else OK, f"{count} receipt(s) waiting to print")


def in_ui(cfg, *, signals=None, printer=None) -> list[Check]:
    """The checks for the Diagnostics page: the doctor's, without opening the camera,
    the printer or the GPIO pins again (``signals``: kiosk.hardware.signals.Signals,
    ``printer``: kiosk.printing.PrintService, each None when the kiosk has none)."""
    checks = run_checks(cfg, skip={"camera_and_decode", "gpio"}, probe_printer=False)
    if signals is not None:
        checks.append(gpio_in_use(signals.describe()))
    if printer is not None:
        checks.append(receipts_waiting(len(printer.pending())))
    return checks
