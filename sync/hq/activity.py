"""HQ's side of the counters' activity (:mod:`sync.activity`): stored once, acked.

Rows arrive on ``.../devices/{d}/activity`` (QoS 1, a JSON list checked by
:func:`sync.protocol.decode_activity`) and are kept in the table ``activity``, keyed by
program, store, device and the device's audit id ``n``: a resend changes nothing.
The collector acks on the device's acks topic with ``{"ids": [], "activity": N}`` (the
highest ``n`` of the batch) after the commit; the device's cursor moves only then.
"""

from datetime import UTC, datetime

from kiosk.core import timefmt
from sync.hq.engine import Migration

_TABLE = """CREATE TABLE activity (
    program TEXT NOT NULL, store TEXT NOT NULL, device TEXT NOT NULL, n BIGINT NOT NULL,
    at TEXT NOT NULL, kind TEXT NOT NULL, source TEXT, verdict TEXT, reward_id TEXT,
    code_hash TEXT, received_at TEXT NOT NULL, PRIMARY KEY (program, store, device, n))"""
_INDEX = "CREATE INDEX activity_store_at ON activity (store, at)"
MIGRATION = Migration("0006-device-activity", sqlite=[_TABLE, _INDEX],
                      postgresql=[_TABLE, _INDEX])


_COLUMNS = ("program", "store", "device", "n", "at", "kind", "source", "verdict", "reward_id",
            "code_hash", "received_at")
_TYPES = ("text", "text", "text", "bigint", *("text",) * 7)


def store_rows(conn, program: str, store: str, device: str, rows: list[dict]) -> int:
    """Store checked rows in one transaction (one statement on PostgreSQL); returns the
    highest ``n`` (to ack). ``at`` is kept as :func:`kiosk.core.timefmt.format` writes
    it (UTC, milliseconds), so the friction roll-up's days are UTC days. The roll-up
    (:mod:`sync.hq.friction`) is kept by triggers in this same transaction."""
    now = timefmt.format(datetime.now(UTC))
    with conn.write():
        conn.insert_rows("activity", _COLUMNS, _TYPES,
                         [(program, store, device, r["n"], timefmt.format(timefmt.parse(r["at"])),
                           r["kind"], r.get("source"), r.get("verdict"), r.get("reward_id"),
                           r.get("code_hash"), now) for r in sorted(rows, key=lambda r: r["n"])],
                         "(program, store, device, n)")
    return max(r["n"] for r in rows)
