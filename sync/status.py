"""The sync agent's state as other processes see it (``kiosk sync-status``, UI, doctor).

The agent writes a few ``sync.*`` keys into the shared database's ``meta`` table; the
outbox table itself gives the number of unacknowledged events. A killed agent cannot
say it is gone, so ``connected`` also requires a recent ``sync.seen_at`` refresh.
"""

from datetime import UTC, datetime, timedelta

from kiosk.core import timefmt
from kiosk.core.store import Store

PREFIX = "sync."
FIELDS = ("connected", "seen_at", "last_sync", "last_ack_at", "last_error", "list_state",
          "list_error", "broker", "pid", "stopped_at", "rejected_messages", "rejected_fanout")
STALE_AFTER = timedelta(seconds=90)  # three missed refreshes of the agent (30 s each)


def write_status(store: Store, **fields) -> None:
    """Record agent state keys (values are stored as text; None clears a key)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown sync status field(s): {', '.join(sorted(unknown))}")
    with store.transaction() as tx:
        for key, value in fields.items():
            if value is None:
                tx.execute("DELETE FROM meta WHERE key = ?", (PREFIX + key,))
            else:
                Store.set_meta(tx, PREFIX + key, _text(value))


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
    pending = store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    list_row = store.conn.execute("SELECT version FROM code_list WHERE id = 1").fetchone()
    return {
        "connected": bool(running and meta.get("connected") == "1"),
        "last_sync": meta.get("last_sync"),
        "pending": pending,
        "agent_running": running,
        "agent_seen_at": meta.get("seen_at"),
        "agent_stopped_at": meta.get("stopped_at"),
        "last_ack_at": meta.get("last_ack_at"),
        "last_error": meta.get("last_error"),
        "list_version": list_row[0] if list_row else None,
        "list_state": meta.get("list_state"),
        "list_error": meta.get("list_error"),
        "broker": meta.get("broker"),
        "rejected_messages": int(meta.get("rejected_messages") or 0),
        "rejected_fanout": int(meta.get("rejected_fanout") or 0),
    }
