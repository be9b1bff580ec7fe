"""A remote look at a kiosk without SSH: doctor results and recent log lines over MQTT.

Topics (beside the device's other topics, see :mod:`sync.protocol`)::

    kiosk/v1/{program}/stores/{store}/devices/{device}/remote/request   HQ -> device, QoS 1
    kiosk/v1/{program}/stores/{store}/devices/{device}/remote/response  device -> HQ, QoS 1

The broker's ACL lets a device only *read* its own request topic and *write* its own
response topic, so only HQ's user can ask anything. A request is JSON
``{"id": "...", "ask": "doctor" | "logs", "lines": N}``; the answer is
``{"id", "ask", "device", "ok", "at", ...}`` with ``status`` and ``checks`` (what
``kiosk doctor --json`` prints) or ``lines`` (the last N journal lines of kiosk and
kiosk-sync, at most 200), or ``error``.

The agent also keeps a short doctor summary that its retained heartbeat carries
(``doctor``: overall status, uptime and each check's status and message), refreshed
every few minutes. Doctor runs here without the checks that need what the UI holds
(camera, GPIO) or that this agent already knows (broker, sync agent), and without
probing the printer (the UI may be printing); the UI writes the printer and camera
state to the database, which the heartbeat carries as before.

Work happens on one thread of this module, never on the agent's loop: the loop only
queues requests (a full queue answers ``busy``).
"""

import json
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kiosk.core import timefmt
from sync import protocol

log = logging.getLogger("kiosk.sync.remote")

REQUEST, RESPONSE = "remote/request", "remote/response"
ASKS = ("doctor", "logs")
MAX_LINES = 200
MAX_REQUEST_BYTES = 4096
SUMMARY_FIRST_S = 20.0
SUMMARY_EVERY_S = 300.0
# The UI holds the camera and the GPIO pins; broker and sync state are this agent's own.
SKIP = {"camera_and_decode", "gpio", "broker", "sync_agent"}
JOURNAL = ["journalctl", "--no-pager", "-o", "short-iso", "-u", "kiosk.service",
           "-u", "kiosk-sync.service", "-n"]
UPTIME = Path("/proc/uptime")


def acl_lines(program: str, store: str, device: str) -> list[str]:
    """The device's ACL lines for remote look (read requests, write responses)."""
    own = lambda leaf: protocol.device_topic(program, store, device, leaf)  # noqa: E731
    return [f"topic read {own(REQUEST)}", f"topic write {own(RESPONSE)}"]


def run_doctor(cfg) -> dict:
    """``kiosk doctor --json`` as this process can run it (see the module docstring)."""
    from kiosk.doctor import run_checks, worst
    from kiosk.hardware import escpos_setup

    escpos_setup.prepare()  # the printer check loads python-escpos in this process
    # English for HQ's support desk, whatever the counter's language (kiosk doctor --lang en).
    checks = run_checks(cfg, skip=set(SKIP), probe_printer=False, lang="en")
    return {"status": worst(checks), "checks": [c.to_dict() for c in checks]}


def read_journal(lines: int) -> list[str]:
    """The last ``lines`` journal lines of the kiosk services (this boot and before)."""
    done = subprocess.run([*JOURNAL, str(lines)], capture_output=True, text=True, timeout=15,
                          check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"journalctl exited with {done.returncode}")
    return done.stdout.splitlines()[-lines:]


def uptime_s() -> float | None:
    try:
        return float(UPTIME.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def summarize(report: dict) -> dict:
    """The heartbeat's compact form of a doctor report."""
    return {"status": report["status"], "at": timefmt.format(datetime.now(UTC)),
            "uptime_s": uptime_s(),
            "checks": {c["name"]: [c["status"], c["message"]] for c in report["checks"]}}


class Remote:
    """Answers HQ's requests and keeps the doctor summary, on a thread of its own."""

    def __init__(self, cfg, publish: Callable[[str, bytes], object], *,
                 doctor: Callable[[object], dict] = run_doctor,
                 journal: Callable[[int], list[str]] = read_journal,
                 first_s: float = SUMMARY_FIRST_S, every_s: float = SUMMARY_EVERY_S):
        p, s, d = cfg.program, cfg.store, cfg.device_id
        self.cfg, self.device, self.publish = cfg, d, publish
        self.request_topic = protocol.device_topic(p, s, d, REQUEST)
        self.response_topic = protocol.device_topic(p, s, d, RESPONSE)
        self.doctor, self.journal, self.every_s = doctor, journal, every_s
        self.summary: dict | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self.first_s = first_s
        self._next = 0.0
        self._thread: threading.Thread | None = None

    # -- called from the agent --------------------------------------------------------
    def subscription(self) -> tuple[str, int]:
        """The request topic to subscribe to on (re)connect; starts the worker once."""
        if self._thread is None:
            self._next = time.monotonic() + self.first_s
            self._thread = threading.Thread(target=self._work, name="kiosk-remote", daemon=True)
            self._thread.start()
        return self.request_topic, 1

    def handles(self, topic: str) -> bool:
        return topic == self.request_topic

    def on_request(self, payload: bytes) -> None:
        """Check and queue a request (never blocks the agent's loop)."""
        try:
            request = self._parse(payload)
        except ValueError as exc:
            log.warning("ignored a bad remote request: %s", exc)
            return
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._answer(request, ok=False, error="busy: try again in a minute")

    def heartbeat_fields(self) -> dict:
        return {"doctor": self.summary}

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._thread.join(5)

    # -- the worker ----------------------------------------------------------------------
    @staticmethod
    def _parse(payload: bytes) -> dict:
        if len(payload) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        try:
            request = json.loads(payload)
        except ValueError:
            raise ValueError("not JSON") from None
        if not isinstance(request, dict) or not isinstance(request.get("id"), str):
            raise ValueError("needs an id")
        if request.get("ask") not in ASKS:
            request["error"] = f"ask must be one of {', '.join(ASKS)}"
        lines = request.get("lines", MAX_LINES)
        request["lines"] = max(1, min(int(lines), MAX_LINES)) if isinstance(lines, int) else MAX_LINES
        return request

    def _work(self) -> None:
        while True:
            try:
                request = self._queue.get(timeout=max(0.0, self._next - time.monotonic()))
            except queue.Empty:
                self._refresh()
                continue
            if request is None:
                return
            self._handle(request)

    def _refresh(self) -> dict | None:
        self._next = time.monotonic() + self.every_s
        try:
            report = self.doctor(self.cfg)
        except Exception as exc:  # a broken check must not end the thread
            log.error("doctor for the heartbeat failed: %s: %s", type(exc).__name__, exc)
            return None
        self.summary = summarize(report)
        return report

    def _handle(self, request: dict) -> None:
        if request.get("error"):
            self._answer(request, ok=False, error=request["error"])
        elif request["ask"] == "doctor":
            report = self._refresh()
            if report is None:
                self._answer(request, ok=False, error="doctor failed on the device (see its log)")
            else:
                self._answer(request, ok=True, **report)
        else:
            try:
                lines = self.journal(request["lines"])
            except (OSError, subprocess.SubprocessError) as exc:
                self._answer(request, ok=False, error=f"cannot read the journal: {exc}")
            else:
                self._answer(request, ok=True, lines=lines)

    def _answer(self, request: dict, *, ok: bool, **fields) -> None:
        body = {"id": request.get("id"), "ask": request.get("ask"), "device": self.device,
                "ok": ok, "at": timefmt.format(datetime.now(UTC)), **fields}
        try:
            self.publish(self.response_topic, json.dumps(body, default=str).encode())
        except Exception as exc:  # disconnected: HQ asks again
            log.warning("could not send a remote answer: %s", exc)
