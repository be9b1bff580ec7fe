"""HQ's database: every event once (unique id), conflicts flagged, codes' max_uses.

At-least-once transport, exactly-once effect: an event is stored under its id with
``INSERT OR IGNORE``, so redeliveries change nothing. Conflicts are rows of their
own, keyed by (event id, kind), so a replay never flags twice:

* ``over_redeemed`` - a redemption that takes a code past its ``max_uses`` (counting
  redemptions not voided); the earlier ones stay clean, the later one is flagged.
* ``void_unknown`` - a void of an event HQ has not seen; resolved (deleted) if that
  redemption arrives later (several collectors may deliver out of order).
* ``void_refused`` - a void sent by another device than the one that made the
  redemption: stored and acked, but the redemption stays counted.
* ``sender_mismatch`` - an event whose ``device``/``store`` fields name another
  device than the topic it came on (the broker ties topics to logins): stored under
  the topic's device.

Refused events (``void_refused``, ``sender_mismatch``) are not relayed to the store's
other kiosks; everything else is (:attr:`Stored.relay`), resends too: a collector that
died between storing a batch and relaying it relays it when the device sends it again.

``max_uses`` comes from the bundles HQ published (``publish --db`` or
``collect --bundle``); a code HQ knows nothing about counts as single-use.
"""

import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kiosk.core import bundle, timefmt
from sync.protocol import EVENT_FIELDS

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, program TEXT NOT NULL, store TEXT NOT NULL, device TEXT NOT NULL,
    seq INTEGER, kind TEXT NOT NULL, voids TEXT, code_hash TEXT NOT NULL, reward_id TEXT,
    list_version INTEGER, at TEXT NOT NULL, clock TEXT, staff TEXT,
    received_at TEXT NOT NULL, voided_by TEXT
);
CREATE INDEX IF NOT EXISTS events_code ON events (program, code_hash);
CREATE INDEX IF NOT EXISTS events_voids ON events (voids);
CREATE TABLE IF NOT EXISTS conflicts (
    event_id TEXT NOT NULL, kind TEXT NOT NULL, program TEXT, store TEXT, device TEXT,
    code_hash TEXT, detail TEXT, flagged_at TEXT NOT NULL,
    PRIMARY KEY (event_id, kind)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    program TEXT NOT NULL, code_hash TEXT NOT NULL, max_uses INTEGER NOT NULL,
    PRIMARY KEY (program, code_hash)
) WITHOUT ROWID;
"""


REFUSED = ("void_refused", "sender_mismatch")  # flags that keep an event from the store


@dataclass(frozen=True)
class Stored:
    """Result of storing one batch: ids to ack, ids newly flagged, how many were new, and
    the events to relay to the store's other kiosks (device and store from the topic)."""

    ids: list[str]
    conflicts: list[str]
    new: int
    relay: list[dict] = field(default_factory=list)


class HqDb:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def _begin(self):
        self.conn.execute("BEGIN IMMEDIATE")

    # -- events -------------------------------------------------------------------
    def collector_group(self) -> str:
        """The shared-subscription group of the collectors writing this database: random,
        made once, so no device can guess it and join the group to swallow events."""
        self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('collector_group', ?)",
                          (f"hq-{secrets.token_hex(16)}",))
        return self.conn.execute("SELECT value FROM meta WHERE key = 'collector_group'").fetchone()[0]

    def store_batch(self, program: str, store: str, device: str, events: list[dict]) -> Stored:
        """Store one device batch in one transaction. The topic names the sender."""
        now = timefmt.format(datetime.now(UTC))
        flagged: list[str] = []
        relay: list[dict] = []
        new = 0
        self._begin()
        try:
            for event in events:
                if self._insert(program, store, device, event, now):
                    new += 1
                    kinds = self._check(program, store, device, event, now)
                    flagged += [event["id"]] if kinds else []
                    refused = bool(set(kinds) & set(REFUSED))
                else:  # a resend: relayed again, as the first relay may have been lost
                    refused = self.conn.execute(
                        "SELECT 1 FROM conflicts WHERE event_id = ? AND kind IN (?, ?)",
                        (event["id"], *REFUSED)).fetchone() is not None
                if not refused:
                    relay.append({**{k: event.get(k) for k in EVENT_FIELDS},
                                  "device": device, "store": store})
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return Stored([e["id"] for e in events], flagged, new, relay)

    def _insert(self, program: str, store: str, device: str, e: dict, now: str) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO events (id, program, store, device, seq, kind, voids, "
            "code_hash, reward_id, list_version, at, clock, staff, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e["id"], program, store, device, e.get("seq"), e["kind"], e.get("voids"),
             e["code_hash"], e.get("reward_id"), e.get("list_version"), e.get("at") or now,
             e.get("clock"), e.get("staff"), now))
        return cur.rowcount == 1

    def _flag(self, kind: str, program: str, store: str, device: str, e: dict, detail: dict,
              now: str) -> list[str]:
        self.conn.execute(
            "INSERT OR IGNORE INTO conflicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (e["id"], kind, program, store, device, e["code_hash"], json.dumps(detail), now))
        return [kind]

    def _check(self, program: str, store: str, device: str, e: dict, now: str) -> list[str]:
        """The conflict kinds this new event raises (none: a clean event)."""
        flags: list[str] = []
        if (e.get("device") or device) != device or (e.get("store") or store) != store:
            flags += self._flag("sender_mismatch", program, store, device, e,
                                {"claims": {"device": e.get("device"), "store": e.get("store")}}, now)
        if e["kind"] == "void":
            return flags + self._check_void(program, store, device, e, now)
        late_voids = self.conn.execute(
            "SELECT id, store, device, code_hash FROM events WHERE kind = 'void' AND voids = ? "
            "ORDER BY received_at", (e["id"],)).fetchall()
        for void_id, void_store, void_device, void_hash in late_voids:  # voids that came first
            self.conn.execute("DELETE FROM conflicts WHERE event_id = ? AND kind = 'void_unknown'",
                              (void_id,))
            if (void_store, void_device) == (store, device):
                self.conn.execute("UPDATE events SET voided_by = ? WHERE id = ? AND voided_by IS NULL",
                                  (void_id, e["id"]))
            else:
                self._flag("void_refused", program, void_store, void_device,
                           {"id": void_id, "code_hash": void_hash},
                           {"voids": e["id"], "redeemed_by": f"{store}/{device}"}, now)
        if self.conn.execute("SELECT voided_by FROM events WHERE id = ?", (e["id"],)).fetchone()[0]:
            return flags
        return flags + self._check_uses(program, store, device, e, now)

    def _check_void(self, program: str, store: str, device: str, e: dict, now: str) -> list[str]:
        """A void counts only from the device that made the redemption."""
        target = self.conn.execute(
            "SELECT id, store, device FROM events WHERE id = ? AND kind = 'redeem'",
            (e.get("voids"),)).fetchone()
        if target is None:
            return self._flag("void_unknown", program, store, device, e,
                              {"voids": e.get("voids")}, now)
        if (target[1], target[2]) != (store, device):
            return self._flag("void_refused", program, store, device, e,
                              {"voids": target[0], "redeemed_by": f"{target[1]}/{target[2]}"}, now)
        self.conn.execute("UPDATE events SET voided_by = ? WHERE id = ? AND voided_by IS NULL",
                          (e["id"], target[0]))
        return []

    def _check_uses(self, program: str, store: str, device: str, e: dict, now: str) -> list[str]:
        row = self.conn.execute("SELECT max_uses FROM codes WHERE program = ? AND code_hash = ?",
                                (program, e["code_hash"])).fetchone()
        max_uses = row[0] if row else 1
        others = [r[0] for r in self.conn.execute(
            "SELECT id FROM events WHERE program = ? AND code_hash = ? AND kind = 'redeem' "
            "AND voided_by IS NULL AND id != ? ORDER BY received_at, at", (program, e["code_hash"], e["id"]))]
        if len(others) + 1 <= max_uses:
            return []
        return self._flag("over_redeemed", program, store, device, e,
                          {"max_uses": max_uses, "earlier": others[:10]}, now)

    # -- codes ----------------------------------------------------------------------
    def load_bundle(self, path: Path) -> tuple[str, int]:
        """Remember each code's max_uses from a bundle (directory or .tar) HQ signed."""
        source = bundle.open_source(path)
        try:
            manifest = bundle.parse_manifest(source.read_bytes(bundle.MANIFEST))
            count = 0
            self._begin()
            try:
                for batch in _batched(bundle.iter_records(source, manifest), 20_000):
                    self.conn.executemany(
                        "INSERT OR REPLACE INTO codes VALUES (?, ?, ?)",
                        [(manifest.program, r.code_hash, r.max_uses) for r in batch if r.op == "put"])
                    count += len(batch)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        finally:
            source.close()
        return manifest.program, count

    # -- reading ------------------------------------------------------------------------
    def count(self, table: str = "events") -> int:
        return self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        cur = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _batched(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
