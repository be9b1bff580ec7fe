"""The one exception root of the kiosk.

Like gpiozero's ``exc.py``: every error the kiosk raises on purpose derives from
:class:`KioskError` and also from the matching built-in, so callers can catch either.
"""

import sqlite3

from kiosk.i18n import Msg


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose.

    Made with a :class:`kiosk.i18n.Msg` as its message, ``str(exc)`` is English (logs,
    ``--json``) and ``kiosk.i18n.say(exc, lang)`` the same words in ``lang``; ``msg``
    is that Msg (None for a plain string message)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.msg = args[0] if args and isinstance(args[0], Msg) else None


class ConfigError(KioskError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class BundleError(KioskError, ValueError):
    """A code bundle was rejected. ``reason`` is a stable machine-readable word."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CsvError(KioskError, ValueError):
    """A bad row in a codes CSV; ``line`` is the 1-based line number in the file."""

    def __init__(self, line: int, message: "Msg | str"):
        super().__init__(Msg("line {line}: {problem}", line=line, problem=message))
        self.line = line


class ProtocolError(KioskError, ValueError):
    """A message on the wire does not follow contract v1 (docs/sync.md)."""


class StoreError(KioskError, RuntimeError):
    """The local database is unusable (corrupt, wrong schema, not writable)."""


class DiskFullError(StoreError, sqlite3.OperationalError):
    """The data partition is full: the change being written was rolled back, nothing
    recorded before it is touched, and writes work again once there is room. Also a
    ``sqlite3.OperationalError``, so code that caught the raw error still does."""


class VoidError(KioskError, ValueError):
    """A redemption cannot be voided (unknown, already voided, window passed)."""


class HardwareError(KioskError, OSError):
    """A camera, printer or GPIO device failed or is missing."""


class ProvisionError(KioskError, ValueError):
    """A provisioning file or setup QR was refused. ``reason`` is a stable word."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PrinterError(HardwareError):
    """A receipt could not be printed. ``fault`` is a stable word for the UI and logs:
    ``unplugged``, ``offline``, ``refused``, ``timeout``, ``paper_out``, ``cover_open``,
    ``busy``, ``permission`` or ``error``."""

    def __init__(self, fault: str, message: str):
        super().__init__(message)
        self.fault = fault
