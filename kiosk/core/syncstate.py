"""The device's sync state in the shared database, as every process sees it.

The sync agent writes a few ``sync.*`` keys into the ``meta`` table (:func:`write_status`);
``kiosk sync-status``, the doctor and the UI read them (:func:`read_status`). The number
of unacknowledged events is the ledger's outbox depth. A killed agent cannot say it is
gone, so ``connected`` also requires a recent ``sync.seen_at`` refresh.

The UI writes the device's own state (camera, printer, paper, last scan) with
:func:`write_device_state`; the agent's heartbeat sends what :func:`read_device_state`
returns. Both sides go through this module, so the ``meta`` keys live in one place.

The agent's words for people (``last_error``, ``list_state``, ``list_error``) may be a
:class:`kiosk.i18n.Msg`: the English text is stored under the key as always (logs, HQ,
``--json``) and the Msg as JSON under ``KEY.msg`` beside it; :func:`read_status` gives
the Msg back (still the English ``str``), so ``say(value, lang)`` shows it in ``lang``.
"""

import json
from datetime import UTC, datetime, timedelta

from kiosk.core import timefmt
from kiosk.core.ledger import outbox_depth
from kiosk.core.store import Store
from kiosk.i18n import Msg

PREFIX = "sync."
FIELDS = ("connected", "seen_at", "last_sync", "last_ack_at", "last_error", "list_state",
          "list_error", "broker", "pid", "stopped_at", "rejected_messages", "rejected_fanout")
STALE_AFTER = timedelta(seconds=90)  # three missed refreshes of the agent (30 s each)
WORDED = ("last_error", "list_state", "list_error")  # may be a Msg: its JSON is kept beside
MSG_SUFFIX = ".msg"
DEVICE_FIELDS = ("camera", "printer", "paper", "last_scan")  # meta keys "<field>.state"


def write_status(store: Store, **fields) -> None:
    """Record agent state keys (values are stored as text; None clears a key)."""
    values = {}
    for key, value in _known(fields, FIELDS, "sync status"):
        values[PREFIX + key] = value
        if key in WORDED:  # a plain text or None also clears an older Msg
            values[PREFIX + key + MSG_SUFFIX] = (json.dumps(value.to_json(), ensure_ascii=False)
                                                 if isinstance(value, Msg) else None)
    _write(store, values)


def write_device_state(store: Store, **fields) -> None:
    """Record the device's own state for the heartbeat (None clears a field)."""
    _write(store, {f"{key}.state": value
                   for key, value in _known(fields, DEVICE_FIELDS, "device state")})


def read_device_state(store: Store) -> dict:
    """``{camera, printer, paper, last_scan}``: text as written, None when never written."""
    keys = [f"{name}.state" for name in DEVICE_FIELDS]
    rows = dict(store.conn.execute(
        f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(keys))})",
        keys).fetchall())
    return {name: rows.get(f"{name}.state") for name in DEVICE_FIELDS}


def _known(fields: dict, allowed: tuple, what: str):
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {what} field(s): {', '.join(sorted(unknown))}")
    return fields.items()


def _write(store: Store, values: dict) -> None:
    with store.transaction() as tx:
        for key, value in values.items():
            if value is None:
                tx.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                Store.set_meta(tx, key, _text(value))


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return timefmt.format(value)
    return str(value)


def read_status(store: Store, now: datetime | None = None) -> dict:
    """``connected``, ``last_sync``, ``pending`` and the agent's other details."""
    rows = dict(store.conn.execute(
        "SELECT key, value FROM meta WHERE key LIKE 'sync.%'").fetchall())
    meta = {key[len(PREFIX):]: value for key, value in rows.items()}
    now = now or datetime.now(UTC)
    seen = timefmt.parse(meta["seen_at"]) if meta.get("seen_at") else None
    # A clean stop says so at once; a killed agent is noticed when seen_at grows stale.
    running = (seen is not None and now - seen <= STALE_AFTER
               and not meta.get("stopped_at"))
    have = store.current_list()
    return {
        "connected": bool(running and meta.get("connected") == "1"),
        "last_sync": meta.get("last_sync"),
        "pending": outbox_depth(store),
        "agent_running": running,
        "agent_seen_at": meta.get("seen_at"),
        "agent_stopped_at": meta.get("stopped_at"),
        "last_ack_at": meta.get("last_ack_at"),
        "last_error": _worded(meta, "last_error"),
        "list_version": have.version if have else None,
        "list_state": _worded(meta, "list_state"),
        "list_error": _worded(meta, "list_error"),
        "broker": meta.get("broker"),
        "rejected_messages": int(meta.get("rejected_messages") or 0),
        "rejected_fanout": int(meta.get("rejected_fanout") or 0),
    }


def _worded(meta: dict, key: str):
    """The stored text, as the Msg it was written from when its JSON is there and
    still says the same English (else the plain text)."""
    text, raw = meta.get(key), meta.get(key + MSG_SUFFIX)
    if text is None or not raw:
        return text
    try:
        msg = Msg.from_json(json.loads(raw))
    except ValueError:
        return text
    return msg if str(msg) == text else text
