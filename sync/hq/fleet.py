"""The fleet as HQ sees it: each device's last heartbeat, online or offline.

Devices publish a retained heartbeat on ``.../devices/{device}/status`` (JSON, see
docs/sync.md) and the broker publishes their Last Will ``offline`` there when they
vanish. ``kiosk-hq serve``'s collector subscribes to every status topic (retained
messages give the whole fleet at start) and :func:`record_status` keeps one row per
device. A heartbeat is at most :data:`MAX_STATUS_BYTES`; anything else on the topic
is refused, never stored.

A device is highlighted (:func:`devices`) when it is offline, when its code list is
older than the newest list another device of its program runs, or when its outbox
(events HQ has not acked) has grown since the heartbeat before.
"""

import json
from datetime import UTC, datetime

from sync import protocol
from sync.hq.engine import Conn

MAX_STATUS_BYTES = 16_384
OUTBOX_WARN = 100  # unacked events that are worth a look even when not growing


class StatusError(ValueError):
    """A status message that is neither a heartbeat nor ``offline``."""


def parse_status(payload: bytes) -> dict | None:
    """The heartbeat dict, or None for ``offline``; :class:`StatusError` otherwise."""
    if payload.strip() == protocol.OFFLINE:
        return None
    if len(payload) > MAX_STATUS_BYTES:
        raise StatusError(f"status of {len(payload)} bytes (at most {MAX_STATUS_BYTES})")
    try:
        status = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise StatusError(f"status is not JSON ({str(exc)[:80]})") from None
    if not isinstance(status, dict):
        raise StatusError("status must be a JSON object")
    return status


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def record_status(conn: Conn, program: str, store: str, device: str, payload: bytes) -> None:
    """Store one status message (raises :class:`StatusError` for a malformed one)."""
    status = parse_status(payload)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with conn.write():
        if status is None:
            conn.execute("UPDATE devices SET state = 'offline', offline_at = ? "
                         "WHERE program = ? AND store = ? AND device = ?",
                         (now, program, store, device))
        else:
            row = conn.execute("SELECT outbox FROM devices WHERE program = ? AND store = ? "
                               "AND device = ?", (program, store, device)).fetchone()
            values = (str(status.get("state") or "online")[:20], _int(status.get("list_version")),
                      _int(status.get("outbox")), str(status.get("software") or "")[:40],
                      json.dumps(status, ensure_ascii=False), now)
            if row is None:
                conn.execute("INSERT INTO devices (program, store, device, state, list_version, "
                             "outbox, software, status, last_seen_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (program, store, device, *values))
            else:
                conn.execute("UPDATE devices SET prev_outbox = outbox, state = ?, list_version = ?, "
                             "outbox = ?, software = ?, status = ?, last_seen_at = ?, "
                             "offline_at = NULL WHERE program = ? AND store = ? AND device = ?",
                             (*values, program, store, device))


def devices(conn: Conn, stores: tuple[str, ...] = ()) -> list[dict]:
    """Every device (only ``stores`` if given), newest list first, with ``flags``."""
    rows = conn.rows("SELECT program, store, device, state, list_version, outbox, prev_outbox, "
                     "software, status, last_seen_at, offline_at FROM devices "
                     "ORDER BY program, store, device")
    newest: dict[str, int] = {}
    for r in rows:
        if r["list_version"] is not None:
            newest[r["program"]] = max(newest.get(r["program"], 0), r["list_version"])
    out = []
    for r in rows:
        if stores and r["store"] not in stores:
            continue
        status = json.loads(r["status"]) if r["status"] else {}
        flags = []
        if r["state"] != "online":
            flags.append("offline")
        if r["list_version"] is not None and r["list_version"] < newest.get(r["program"], 0):
            flags.append("list behind")
        if r["outbox"] is not None and (r["outbox"] >= OUTBOX_WARN
                                        or r["outbox"] > (r["prev_outbox"] or 0) > 0):
            flags.append("outbox growing")
        out.append({**r, "camera": status.get("camera"), "printer": status.get("printer"),
                    "paper": status.get("paper"), "clock": status.get("clock"),
                    "flags": flags})
    return out
