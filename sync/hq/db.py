"""HQ's database: every event once (unique id), conflicts flagged, codes' max_uses.

At-least-once transport, exactly-once effect: an event is stored under its id with
``ON CONFLICT (id) DO NOTHING``, so redeliveries change nothing. Conflicts are rows of their
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

The database is SQLite (``sqlite:///hq.sqlite`` or a path) or PostgreSQL
(``postgresql://...``); the schema is the named migrations below.
"""

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kiosk.core import bundle, timefmt
from sync.hq import activity, friction
from sync.hq.engine import Conn, Engine, Migration, open_engine
from sync.protocol import EVENT_FIELDS

_EVENT_COLUMNS = """
    program TEXT NOT NULL, store TEXT NOT NULL, device TEXT NOT NULL,
    seq INTEGER, kind TEXT NOT NULL, voids TEXT, code_hash TEXT NOT NULL, reward_id TEXT,
    list_version INTEGER, at TEXT NOT NULL, clock TEXT, staff TEXT,
    received_at TEXT NOT NULL, voided_by TEXT"""
_COMMON = [
    "CREATE INDEX IF NOT EXISTS events_code ON events (program, code_hash)",
    "CREATE INDEX IF NOT EXISTS events_voids ON events (voids)",
    """CREATE TABLE IF NOT EXISTS conflicts (
    event_id TEXT NOT NULL, kind TEXT NOT NULL, program TEXT, store TEXT, device TEXT,
    code_hash TEXT, detail TEXT, flagged_at TEXT NOT NULL,
    PRIMARY KEY (event_id, kind))""",
]
_WEBHOOKS = """CREATE TABLE webhooks (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, created_at TEXT NOT NULL,
    event_cursor BIGINT NOT NULL DEFAULT 0, conflict_cursor BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0, last_error TEXT)"""
# Conflicts get a cursor column n that is never reused (a resolved void_unknown
# conflict is deleted; SQLite would hand its rowid out again): a counter and a
# trigger on SQLite, a bigserial on PostgreSQL.
_WEBHOOKS_MIGRATION = Migration(
    "0004-webhooks-conflict-cursor",
    sqlite=[_WEBHOOKS,
            "ALTER TABLE conflicts ADD COLUMN n INTEGER",
            "UPDATE conflicts SET n = rowid",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO counters VALUES ('conflicts', (SELECT coalesce(max(rowid), 0) FROM conflicts))",
            """CREATE TRIGGER conflicts_n AFTER INSERT ON conflicts BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'conflicts';
    UPDATE conflicts SET n = (SELECT value FROM counters WHERE name = 'conflicts')
        WHERE rowid = NEW.rowid;
END"""],
    postgresql=[_WEBHOOKS, "ALTER TABLE conflicts ADD COLUMN n BIGSERIAL"],
)


_FLEET_AUDIT = [
    """CREATE TABLE devices (
    program TEXT NOT NULL, store TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
    list_version BIGINT, outbox BIGINT, prev_outbox BIGINT, software TEXT, status TEXT,
    last_seen_at TEXT, offline_at TEXT, PRIMARY KEY (program, store, device))""",
    "ALTER TABLE conflicts ADD COLUMN resolution TEXT",
    "ALTER TABLE conflicts ADD COLUMN resolved_by TEXT",
    "ALTER TABLE conflicts ADD COLUMN resolved_at TEXT",
    "ALTER TABLE conflicts ADD COLUMN note TEXT",
    """CREATE TABLE audit (
    at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT)""",
    "CREATE INDEX audit_at ON audit (at)",
]

_CODE_LISTS = [  # lists uploaded to serve (sync/hq/codelists.py)
    """CREATE TABLE code_lists (
    program TEXT NOT NULL, version BIGINT NOT NULL, base_version BIGINT, key_id TEXT NOT NULL,
    records BIGINT NOT NULL, bytes BIGINT NOT NULL, manifest_sha256 TEXT NOT NULL,
    file TEXT NOT NULL, code_salt TEXT NOT NULL, issued_at TEXT, expires_at TEXT,
    uploaded_at TEXT NOT NULL, uploaded_by TEXT NOT NULL, published_at TEXT, published_by TEXT,
    PRIMARY KEY (program, version))""",
]


# The dashboard at 10 million events (bench/hq_pages.py): indexes for the time-ordered
# lists, the filters and the code search, and a roll-up per program, day, store and
# reward that triggers keep exact in the writer's own transaction (the redemptions
# page sums a few thousand of its rows instead of millions of events).
_DAILY = """CREATE TABLE daily (
    program TEXT NOT NULL, day TEXT NOT NULL, store TEXT NOT NULL, reward_id TEXT NOT NULL,
    redeemed BIGINT NOT NULL, voided BIGINT NOT NULL,
    PRIMARY KEY (program, day, store, reward_id))"""
_DAILY_FILL = """INSERT INTO daily (program, day, store, reward_id, redeemed, voided)
    SELECT program, substr(at, 1, 10), store, coalesce(reward_id, ''), count(*), count(voided_by)
    FROM events WHERE kind = 'redeem' GROUP BY 1, 2, 3, 4"""
_DAILY_KEY = ("program = NEW.program AND day = substr(NEW.at, 1, 10) AND store = NEW.store "
              "AND reward_id = coalesce(NEW.reward_id, '')")
_DASHBOARD_MIGRATION = Migration(
    "0007-dashboard-indexes-daily",
    sqlite=["CREATE INDEX events_at ON events (at, id)",
            "CREATE INDEX events_store_at ON events (store, at, id)",
            _DAILY, _DAILY_FILL,
            """CREATE TRIGGER events_daily_insert AFTER INSERT ON events WHEN NEW.kind = 'redeem'
BEGIN
    INSERT INTO daily (program, day, store, reward_id, redeemed, voided)
    VALUES (NEW.program, substr(NEW.at, 1, 10), NEW.store, coalesce(NEW.reward_id, ''), 1,
            NEW.voided_by IS NOT NULL)
    ON CONFLICT (program, day, store, reward_id)
    DO UPDATE SET redeemed = redeemed + 1, voided = voided + excluded.voided;
END""",
            f"""CREATE TRIGGER events_daily_void AFTER UPDATE OF voided_by ON events
WHEN NEW.kind = 'redeem' AND (OLD.voided_by IS NULL) != (NEW.voided_by IS NULL)
BEGIN
    UPDATE daily SET voided = voided + CASE WHEN NEW.voided_by IS NULL THEN -1 ELSE 1 END
    WHERE {_DAILY_KEY};
END"""],
    postgresql=["CREATE INDEX events_at ON events (at, id)",
                "CREATE INDEX events_store_at ON events (store, at, id)",
                # equality as before, and the dashboard's prefix search (LIKE 'ab12%')
                # whatever the database's collation
                "DROP INDEX events_code",
                "CREATE INDEX events_code ON events (code_hash text_pattern_ops)",
                _DAILY, _DAILY_FILL,
                # once per INSERT statement (a whole group of batches), in key order so
                # two writers never deadlock on the rows they add to
                """CREATE FUNCTION daily_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO daily AS d (program, day, store, reward_id, redeemed, voided)
    SELECT program, substr(at, 1, 10), store, coalesce(reward_id, ''), count(*), count(voided_by)
    FROM new_rows WHERE kind = 'redeem' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (program, day, store, reward_id)
    DO UPDATE SET redeemed = d.redeemed + excluded.redeemed, voided = d.voided + excluded.voided;
    RETURN NULL;
END $$""",
                """CREATE TRIGGER events_daily_insert AFTER INSERT ON events
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION daily_on_insert()""",
                f"""CREATE FUNCTION daily_on_void() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE daily SET voided = voided + CASE WHEN NEW.voided_by IS NULL THEN -1 ELSE 1 END
    WHERE {_DAILY_KEY};
    RETURN NULL;
END $$""",
                """CREATE TRIGGER events_daily_void AFTER UPDATE OF voided_by ON events
FOR EACH ROW WHEN (NEW.kind = 'redeem' AND (OLD.voided_by IS NULL) <> (NEW.voided_by IS NULL))
EXECUTE FUNCTION daily_on_void()"""],
)


MIGRATIONS = [
    # The first one is what HQ databases made before migrations already hold
    # (CREATE ... IF NOT EXISTS), so an old hq.sqlite upgrades in place.
    Migration(
        "0001-events-conflicts-codes",
        sqlite=[f"CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, {_EVENT_COLUMNS})",
                *_COMMON,
                """CREATE TABLE IF NOT EXISTS codes (
    program TEXT NOT NULL, code_hash TEXT NOT NULL, max_uses INTEGER NOT NULL,
    PRIMARY KEY (program, code_hash)) WITHOUT ROWID"""],
        # n: the API's cursor (SQLite uses the rowid, see Engine.cursor_column)
        postgresql=[f"CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, "
                    f"n BIGSERIAL UNIQUE, {_EVENT_COLUMNS})",
                    *_COMMON,
                    """CREATE TABLE IF NOT EXISTS codes (
    program TEXT NOT NULL, code_hash TEXT NOT NULL, max_uses INTEGER NOT NULL,
    PRIMARY KEY (program, code_hash))"""]),
    Migration(
        "0002-api-tokens",
        sqlite=["""CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
    revoked_at TEXT, last_used_at TEXT)"""],
        postgresql=["""CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
    revoked_at TEXT, last_used_at TEXT)"""]),
    Migration(
        "0003-users-meta",
        sqlite=["""CREATE TABLE users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
    stores TEXT, created_at TEXT NOT NULL)""",
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"],
        postgresql=["""CREATE TABLE users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
    stores TEXT, created_at TEXT NOT NULL)""",
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"]),
    _WEBHOOKS_MIGRATION,
    Migration("0005-fleet-resolutions-audit", sqlite=_FLEET_AUDIT, postgresql=_FLEET_AUDIT),
    Migration("0006-code-lists", sqlite=_CODE_LISTS, postgresql=_CODE_LISTS),
    activity.MIGRATION,  # the counters' audit rows (sync/hq/activity.py)
    _DASHBOARD_MIGRATION,
    friction.MIGRATION,  # the friction report's roll-up (sync/hq/friction.py)
]


REFUSED = ("void_refused", "sender_mismatch")  # flags that keep an event from the store


_INSERT_COLUMNS = ("id", "program", "store", "device", "seq", "kind", "voids", "code_hash",
                   "reward_id", "list_version", "at", "clock", "staff", "received_at")
_INSERT_TYPES = ("text", "text", "text", "text", "bigint", "text", "text", "text",
                 "text", "bigint", "text", "text", "text", "text")


@dataclass(frozen=True)
class Batch:
    """One device message: its events and the sender its topic names."""

    program: str
    store: str
    device: str
    events: list[dict]


@dataclass(frozen=True)
class _Found:
    known: set[str]    # ids HQ already has (resends)
    refused: set[str]  # of those, the refused ones (never relayed)


@dataclass(frozen=True)
class Stored:
    """Result of storing one batch: ids to ack, ids newly flagged, how many were new, and
    the events to relay to the store's other kiosks (device and store from the topic)."""

    ids: list[str]
    conflicts: list[str]
    new: int
    relay: list[dict] = field(default_factory=list)


class HqDb:
    """HQ's events, conflicts and codes on SQLite or PostgreSQL (see :mod:`sync.hq.engine`)."""

    def __init__(self, url: Path | str | Engine):
        self.engine = url if isinstance(url, Engine) else open_engine(url)
        self.conn = self.engine.connect()
        try:
            self.conn.migrate(MIGRATIONS)
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    # -- events -------------------------------------------------------------------
    def collector_group(self) -> str:
        """The shared-subscription group of the collectors writing this database: random,
        made once, so no device can guess it and join the group to swallow events."""
        self.conn.execute("INSERT INTO meta VALUES ('collector_group', ?) "
                          "ON CONFLICT (key) DO NOTHING", (f"hq-{secrets.token_hex(16)}",))
        return self.conn.execute("SELECT value FROM meta WHERE key = 'collector_group'").fetchone()[0]

    def store_batch(self, program: str, store: str, device: str, events: list[dict]) -> Stored:
        """Store one device batch in one transaction. The topic names the sender."""
        return self.store_batches([Batch(program, store, device, events)])[0]

    def store_batches(self, batches: list["Batch"]) -> list[Stored]:
        """Store several device batches (each as its topic names the sender) in one
        transaction: a collector commits whatever arrived while it was busy at once.

        The usual group (new redemptions of codes still within their uses, resends) is
        stored with a fixed handful of statements whatever its size, sent to
        PostgreSQL in two round trips (:meth:`_store_clean`); anything else (voids, a
        code over its uses, a sender mismatch, an id twice) goes event by event
        through the checks (:meth:`_store_each`), in a transaction of its own."""
        now = timefmt.format(datetime.now(UTC))
        keys = _lock_keys(batches)
        with self.conn.pipeline(), self.conn.write(keys):
            found = self._lookup(batches)  # one round trip with BEGIN and the locks
            if found is not None:
                return self._store_clean(batches, found, now)  # sent with the COMMIT
        with self.conn.write(keys):
            return [self._store_each(b.program, b.store, b.device, b.events, now)
                    for b in batches]

    def _in(self, values) -> str:
        return ", ".join("?" for _ in values)

    def _any(self, column: str, values: list) -> tuple[str, list]:
        """``column`` is one of ``values``: one array parameter on PostgreSQL (one
        prepared statement whatever the count), a list of placeholders on SQLite."""
        if self.engine.kind == "postgresql":
            return f"{column} = ANY(%b)", [list(values)]  # binary: no quoting to do
        return f"{column} IN ({self._in(values)})", list(values)

    def _lookup(self, batches: list["Batch"]) -> "_Found | None":
        """What the clean path needs to know, read with one round trip; None when the
        group cannot take it (then every event goes through the checks)."""
        events = [e for b in batches for e in b.events]
        ids = [e["id"] for e in events]
        if not ids or len(set(ids)) != len(ids):
            return None if ids else _Found(set(), set())
        programs = {b.program for b in batches}
        if len(programs) != 1:
            return None
        program = programs.pop()
        hashes = sorted({e["code_hash"] for e in events})
        id_in, id_args = self._any("id", ids)
        voids_in, voids_args = self._any("voids", ids)
        hash_in, hash_args = self._any("code_hash", hashes)
        ref_in, ref_args = self._any("event_id", ids)
        queries = [  # all sent before the first result is read (a pipeline)
            self.conn.execute(f"SELECT id FROM events WHERE {id_in}", id_args),
            self.conn.execute(f"SELECT voids FROM events WHERE kind = 'void' AND {voids_in}",
                              voids_args),
            self.conn.execute(f"SELECT code_hash, max_uses FROM codes WHERE program = ? "
                              f"AND {hash_in}", [program, *hash_args]),
            self.conn.execute(f"SELECT code_hash, count(*) FROM events WHERE program = ? AND "
                              f"kind = 'redeem' AND voided_by IS NULL AND {hash_in} "
                              f"GROUP BY code_hash", [program, *hash_args]),
            self.conn.execute(f"SELECT event_id FROM conflicts WHERE {ref_in} AND kind IN "
                              f"({self._in(REFUSED)})", [*ref_args, *REFUSED]),
        ]
        known, voided, limits, used, refused = (q.fetchall() for q in queries)
        known = {r[0] for r in known}
        fresh = [(b, e) for b in batches for e in b.events if e["id"] not in known]
        if any(e["kind"] != "redeem" or (e.get("device") or b.device) != b.device
               or (e.get("store") or b.store) != b.store for b, e in fresh):
            return None
        if any(r[0] not in known for r in voided):
            return None  # a void came before its redemption
        wanted: dict[str, int] = {}
        for _, e in fresh:
            wanted[e["code_hash"]] = wanted.get(e["code_hash"], 0) + 1
        limits, used = dict(limits), dict(used)
        if any(used.get(h, 0) + n > limits.get(h, 1) for h, n in wanted.items()):
            return None
        return _Found(known, {r[0] for r in refused})

    def _store_clean(self, batches: list["Batch"], found: "_Found", now: str) -> list[Stored]:
        rows = [(e["id"], b.program, b.store, b.device, e.get("seq"), e["kind"], e.get("voids"),
                 e["code_hash"], e.get("reward_id"), e.get("list_version"), e.get("at") or now,
                 e.get("clock"), e.get("staff"), now)
                for b in batches for e in b.events if e["id"] not in found.known]
        if rows:  # all new: read under the ids' locks (_lookup), so no ON CONFLICT
            self.conn.insert_rows("events", _INSERT_COLUMNS, _INSERT_TYPES, rows, None)
        return [Stored([e["id"] for e in b.events], [],
                       sum(e["id"] not in found.known for e in b.events),
                       [self._relayed(e, b.store, b.device) for e in b.events
                        if e["id"] not in found.refused])
                for b in batches]

    def _refused(self, ids: list[str]) -> set[str]:
        """Which of these stored events were refused (never relayed to the store)."""
        if not ids:
            return set()
        return {r[0] for r in self.conn.execute(
            f"SELECT event_id FROM conflicts WHERE event_id IN ({self._in(ids)}) "
            f"AND kind IN ({self._in(REFUSED)})", [*ids, *REFUSED])}

    @staticmethod
    def _relayed(e: dict, store: str, device: str) -> dict:
        relayed = dict(zip(EVENT_FIELDS, map(e.get, EVENT_FIELDS), strict=True))
        relayed["device"], relayed["store"] = device, store
        return relayed

    def _store_each(self, program: str, store: str, device: str, events: list[dict],
                    now: str) -> Stored:
        flagged: list[str] = []
        relay: list[dict] = []
        new = 0
        for event in events:
            if self._insert(program, store, device, event, now):
                new += 1
                kinds = self._check(program, store, device, event, now)
                flagged += [event["id"]] if kinds else []
                refused = bool(set(kinds) & set(REFUSED))
            else:  # a resend: relayed again, as the first relay may have been lost
                refused = bool(self._refused([event["id"]]))
            if not refused:
                relay.append(self._relayed(event, store, device))
        return Stored([e["id"] for e in events], flagged, new, relay)

    def _insert(self, program: str, store: str, device: str, e: dict, now: str) -> bool:
        cur = self.conn.execute(
            "INSERT INTO events (id, program, store, device, seq, kind, voids, "
            "code_hash, reward_id, list_version, at, clock, staff, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (e["id"], program, store, device, e.get("seq"), e["kind"], e.get("voids"),
             e["code_hash"], e.get("reward_id"), e.get("list_version"), e.get("at") or now,
             e.get("clock"), e.get("staff"), now))
        return cur.rowcount == 1

    def _flag(self, kind: str, program: str, store: str, device: str, e: dict, detail: dict,
              now: str) -> list[str]:
        self.conn.execute(
            "INSERT INTO conflicts (event_id, kind, program, store, device, code_hash, detail, "
            "flagged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id, kind) DO NOTHING",
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
            with self.conn.write():
                for batch in _batched(bundle.iter_records(source, manifest), 20_000):
                    self.conn.executemany(
                        "INSERT INTO codes VALUES (?, ?, ?) ON CONFLICT (program, code_hash) "
                        "DO UPDATE SET max_uses = excluded.max_uses",
                        [(manifest.program, r.code_hash, r.max_uses) for r in batch if r.op == "put"])
                    count += len(batch)
        finally:
            source.close()
        return manifest.program, count

    # -- reading ------------------------------------------------------------------------
    def count(self, table: str = "events") -> int:
        return self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        return self.conn.rows(sql, params)


def events_after(conn: Conn, cursor: int, limit: int, fields: Iterable[str]) -> list[dict]:
    """The events after ``cursor`` in cursor order, each with its ``cursor``: what the
    API and the webhook dispatcher page by. Read :meth:`~sync.hq.engine.Conn.settled`,
    so a row committed late never lands below a cursor already handed out."""
    col = conn.engine.cursor_column
    with conn.settled():
        return conn.rows(f"SELECT {col} AS cursor, {', '.join(fields)} FROM events "
                         f"WHERE {col} > ? ORDER BY {col} LIMIT ?", (cursor, limit))


def _lock_keys(batches: list[Batch]) -> set[str]:
    """What a transaction storing ``batches`` locks (:meth:`sync.hq.engine.Conn.write`):
    each code (use counts) and each event id, a void's target too (a void and its
    redemption stored at once by two collectors see each other)."""
    keys = set()
    for b in batches:
        for e in b.events:
            keys.add(f"code:{b.program}:{e['code_hash']}")
            keys.add(f"id:{e['id']}")
            if e.get("voids"):
                keys.add(f"id:{e['voids']}")
    return keys


def _batched(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
