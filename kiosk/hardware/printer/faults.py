"""Turning whatever a transport raised into one :class:`PrinterError` staff can act on.

python-escpos wraps the real cause (``ConnectionRefusedError``, ``TimeoutError``, a
pyusb ``USBError`` with an errno, ``PermissionError``...) in ``DeviceNotFoundError``
without chaining it explicitly, so the cause is found on ``__context__``.

A fault's message is a :class:`kiosk.i18n.Msg`: ``str(err)`` is English (logs, the
print queue's ``error`` column), ``kiosk.i18n.say(err, lang)`` or :func:`translate`
give it in one of the kiosk's languages (``kiosk doctor``, ``kiosk print-test``).
"""

import errno
import socket

from kiosk.errors import PrinterError
from kiosk.i18n import N_, Msg, say, tr

MESSAGES = {
    "unplugged": N_("Printer not found: check that it is plugged in and switched on."),
    "offline": N_("Printer is offline: check that it is switched on and not in an error state."),
    "refused": N_("Printer refused the connection: check its address and that it is switched on."),
    "timeout": N_("Printer did not answer in time: check its cable or network and its power."),
    "paper_out": N_("Printer is out of paper: load a new roll."),
    "cover_open": N_("Printer cover is open: close it."),
    "busy": N_("Printer is busy (another program is using it): close that program or replug the printer."),
    "permission": N_("No permission to use the printer: the kiosk user needs the lp group (udev rule 60-kiosk-printer.rules)."),
    "error": N_("Printer failed"),
}
# What a printer that has no fault reports (kiosk.hardware.printer.status, kiosk.printing).
STATES = {
    "ok": N_("Printer ready."),
    "unknown": N_("Printer does not report its status; printing anyway."),
    "paper_low": N_("Printer paper is running low: have a new roll ready."),
    "printing": N_("Printing a receipt."),
    "none": N_("No printer is configured."),
}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _kind_of(exc: BaseException) -> str | None:
    """The fault word for one exception, or None if it says nothing specific."""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, TimeoutError | socket.timeout) or code == errno.ETIMEDOUT or "timed out" in text:
        return "timeout"
    if code == errno.EBUSY or "resource busy" in text:
        return "busy"
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM) or "access denied" in text:
        return "permission"
    if (isinstance(exc, FileNotFoundError) or code in (errno.ENOENT, errno.ENODEV, errno.ENXIO)
            or "not found" in text or "no such device" in text):
        return "unplugged"
    if isinstance(exc, ConnectionError | BrokenPipeError) or code in (errno.EPIPE, errno.ECONNRESET, errno.EIO):
        return "offline"
    return None


def classify(exc: BaseException, where: str) -> PrinterError:
    """A :class:`PrinterError` for ``exc``; ``where`` names the printer in the message."""
    if isinstance(exc, PrinterError):
        return exc
    for link in reversed(list(_chain(exc))):  # the original cause says most
        kind = _kind_of(link)
        if kind:
            return fault(kind, where)
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return fault("error", where, detail)


def fault(kind: str, where, detail: str = "") -> PrinterError:
    """``where``: the printer's URL (or a Msg naming it); ``detail``: the cause's own words."""
    if detail:
        return PrinterError(kind, Msg("{problem}: {detail} ({printer})", problem=Msg(MESSAGES[kind]),
                                      detail=detail, printer=where))
    return PrinterError(kind, Msg("{problem} ({printer})", problem=Msg(MESSAGES[kind]), printer=where))


def translate(message, lang: str) -> str:
    """A fault or status message in ``lang``: a Msg (or an error made with one) said in
    it; an English string (as older code and the queue's ``error`` column hold it) with
    its fault sentence translated, the detail and the printer's address kept."""
    if isinstance(message, Msg):
        return say(message, lang)
    for english in sorted([*MESSAGES.values(), *STATES.values()], key=len, reverse=True):
        if message.startswith(english):
            return tr(english, lang) + message[len(english):]
    return message
