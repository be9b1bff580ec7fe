"""systemd service notifications (``sd_notify``): READY, WATCHDOG pings, STOPPING.

``kiosk.service`` and ``kiosk-sync.service`` are ``Type=notify`` with ``WatchdogSec=``:
systemd restarts the process when the pings stop, so a frozen UI or a wedged sync loop
recovers by itself. The pings must come from the loop that would freeze (the UI calls
:func:`ping` from Kivy's Clock, the sync agent from its main loop), never from a
helper thread that keeps running while the real work is stuck.

Off systemd (``$NOTIFY_SOCKET`` unset: a laptop, the tests, ``kiosk demo``) every
function is a no-op. The protocol is one datagram on a Unix socket, so a few lines of
socket code replace a dependency.
"""

import os
import socket

_SOCKET_ENV = "NOTIFY_SOCKET"


def _address() -> str | None:
    address = os.environ.get(_SOCKET_ENV)
    if not address:
        return None
    if address.startswith("@"):  # abstract namespace socket
        return "\0" + address[1:]
    return address


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not under systemd."""
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False  # a vanished socket must never crash the kiosk
    return True


def notify_ready(status: str = "") -> bool:
    """Start-up finished: systemd marks the unit active and starts the watchdog timer."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def ping() -> bool:
    """Keep-alive; call at least twice per ``WatchdogSec`` from the main loop."""
    return notify("WATCHDOG=1")


def notify_stopping() -> bool:
    """Orderly shutdown started (so a slow stop is not taken for a hang)."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def interval_s(default: float | None = None) -> float | None:
    """Recommended ping interval: half of ``$WATCHDOG_USEC`` when systemd asks for pings
    from this very process (``$WATCHDOG_PID``), else ``default``."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return default
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return default
