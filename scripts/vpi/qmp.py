"""Small clients for the virtual Pi: QEMU's QMP monitor and the guest's test agent.

Both speak JSON lines over a Unix socket that QEMU listens on. Standard library only.
"""

import itertools
import json
import socket
import time


class LineSocket:
    """A Unix stream socket read and written as JSON lines, with deadlines."""

    def __init__(self, path: str, timeout: float = 10.0, alive=lambda: True):
        """Connects, retrying for ``timeout`` seconds while ``alive()`` (the listener's
        process is still there)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline or not alive():
                    raise
                time.sleep(0.1)
        self.buf = b""

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, timeout: float) -> dict | None:
        """The next JSON line, or None when nothing arrived in ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return self.recv(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.sock.close()


class QMP:
    """QEMU Machine Protocol: commands and the events seen while waiting for replies."""

    def __init__(self, path: str, timeout: float = 10.0, alive=lambda: True):
        self.line = LineSocket(path, timeout, alive)
        greeting = self.line.recv(10)
        if not greeting or "QMP" not in greeting:
            raise ConnectionError(f"no QMP greeting: {greeting}")
        self.events: list[dict] = []
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args) -> object:
        self.line.send({"execute": name, "arguments": args} if args else {"execute": name})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = self.line.recv(deadline - time.monotonic())
            if msg is None:
                break
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")
            elif "return" in msg:
                return msg["return"]
        raise TimeoutError(f"QMP {name}: no answer")

    def poll_events(self, timeout: float = 0.0) -> list[dict]:
        end = time.monotonic() + timeout
        while True:
            try:
                msg = self.line.recv(max(0.0, end - time.monotonic()) or 0.01)
            except (OSError, ConnectionError):  # QEMU exited: keep what it said before
                break
            if msg is None:
                break
            if "event" in msg:
                self.events.append(msg)
        return self.events

    # -- input ---------------------------------------------------------------------
    def type_text(self, text: str, hold_ms: int = 100, gap_s: float = 0.0) -> None:
        """Types ``text`` and Enter on the USB keyboard, one key per send-key.

        QEMU's USB keyboard reports its key state when the guest polls it; when a
        press and its release both come between two polls (an emulated guest late to
        poll again), the key is lost. Each key is therefore held ``hold_ms`` (a
        release coalesced with the next key's press loses nothing) and followed by
        ``gap_s``: about 8 keys a second, a slow scanner, inside the kiosk's
        ``[ui] scanner_key_gap_ms`` as the harness sets it."""
        for ch in text + "\n":
            keys = [{"type": "qcode", "data": qcode}
                    for qcode in _qcodes(ch)]
            self.cmd("send-key", keys=keys, **{"hold-time": hold_ms})
            time.sleep(hold_ms / 1000 + gap_s)

    def tap(self, x: int, y: int, width: int = 800, height: int = 480) -> None:
        """One touch on the virtio tablet at screen pixel (x, y): move, press, release."""
        ax, ay = round(x * 0x7FFF / (width - 1)), round(y * 0x7FFF / (height - 1))
        self.cmd("input-send-event", events=[
            {"type": "abs", "data": {"axis": "x", "value": ax}},
            {"type": "abs", "data": {"axis": "y", "value": ay}}])
        self.cmd("input-send-event", events=[
            {"type": "btn", "data": {"down": True, "button": "left"}}])
        time.sleep(0.15)
        self.cmd("input-send-event", events=[
            {"type": "btn", "data": {"down": False, "button": "left"}}])


_SHIFTED = {"_": "minus", ":": "semicolon", "!": "1", "@": "2", "#": "3", "$": "4",
            "%": "5", "^": "6", "&": "7", "*": "8", "(": "9", ")": "0", "+": "equal"}
_PLAIN = {"-": "minus", "\n": "ret", " ": "spc", ".": "dot", ",": "comma", "/": "slash",
          "=": "equal", ";": "semicolon"}


def _qcodes(ch: str) -> list[str]:
    if ch in _PLAIN:
        return [_PLAIN[ch]]
    if ch in _SHIFTED:
        return ["shift", _SHIFTED[ch]]
    if ch.isdigit() or ch.islower():
        return [ch]
    if ch.isupper():
        return ["shift", ch.lower()]
    raise ValueError(f"cannot type {ch!r} on the virtual keyboard")


class Agent:
    """The guest's vpi-agent (scripts/vpi/overlay): shell commands as root."""

    _ids = itertools.count(1)

    def __init__(self, path: str):
        self.path = path
        self.line: LineSocket | None = None

    def connect(self, timeout: float, alive=lambda: True) -> bool:
        """Wait until the guest answers; False after ``timeout`` seconds or when
        ``alive()`` says the machine is gone. Requests queue up in the port until the
        agent starts, and a guest still booting answers slowly: one ping at a time,
        and any answer counts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            try:
                if self.line is None:
                    self.line = LineSocket(self.path, timeout=2)
                    self.line.send({"id": next(self._ids), "cmd": "true", "timeout": 30})
                if self.line.recv(min(10.0, max(0.1, deadline - time.monotonic()))) is not None:
                    return True
            except (OSError, ConnectionError):
                self.close()
                time.sleep(1)
        return False

    def run(self, cmd: str, timeout: float = 60, wait: float | None = None) -> tuple[int, str]:
        """(exit code, stdout + stderr); (-1, reason) when no answer came."""
        if self.line is None:
            return -1, "agent not connected"
        rid = next(self._ids)
        try:
            self.line.send({"id": rid, "cmd": cmd, "timeout": timeout})
            deadline = time.monotonic() + (wait if wait is not None else timeout + 10)
            while time.monotonic() < deadline:
                msg = self.line.recv(deadline - time.monotonic())
                if msg is None:
                    break
                if msg.get("id") == rid:
                    return msg["rc"], msg["out"] + msg["err"]
        except (OSError, ConnectionError) as exc:
            self.close()
            return -1, f"agent: {exc}"
        return -1, "agent: no answer"

    def fire(self, cmd: str) -> None:
        """Send a command whose answer will never come (crash, power cut)."""
        if self.line is not None:
            self.line.send({"id": next(self._ids), "cmd": cmd, "timeout": 5})

    def close(self) -> None:
        if self.line is not None:
            self.line.close()
        self.line = None
