"""Importing a verified bundle into the store, streaming and atomically.

Every record is first appended to ``codes_staging`` in short batches (so the kiosk can
still record redemptions meanwhile; appends without an index are cheap). Then one
transaction applies the staged records in key order: a full snapshot builds a new
``codes`` table and swaps it in, a delta merges into the current one. Until that
commit the current list is untouched; any failure leaves it exactly as it was.
"""

import fcntl
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.core import bundle, clock, timefmt
from kiosk.core.bundle import Manifest
from kiosk.core.store import Store
from kiosk.errors import BundleError, StoreError

BATCH = 50_000
Progress = Callable[[int, int], None]  # (records done, records total)


@dataclass(frozen=True)
class CurrentList:
    program: str
    version: int
    base_version: int | None
    issued_at: datetime
    expires_at: datetime
    key_id: str
    code_salt: bytes
    rewards: dict
    code_count: int
    imported_at: datetime


def current(store: Store) -> CurrentList | None:
    """The installed code list's manifest details, or None when none is installed."""
    row = store.conn.execute(
        "SELECT program, version, base_version, issued_at, expires_at, key_id, code_salt, "
        "rewards, code_count, imported_at FROM code_list WHERE id = 1"
    ).fetchone()
    if row is None:
        return None
    return CurrentList(
        row[0], row[1], row[2], timefmt.parse(row[3]), timefmt.parse(row[4]), row[5],
        bytes(row[6]), json.loads(row[7]), row[8], timefmt.parse(row[9]),
    )


def check_applicable(manifest: Manifest, have: CurrentList | None, program: str,
                     now: "datetime | clock.Reading | None" = None) -> None:
    """Reject a wrong program, a rollback, a delta on the wrong base, an expired list,
    and (given the device's time) one issued too far ahead of it."""
    if manifest.program != program:
        raise BundleError("wrong_program", f"bundle is for program {manifest.program!r}, this device runs {program!r}")
    have_version = have.version if have else None
    if have_version is not None and manifest.version <= have_version:
        raise BundleError("rollback", f"bundle version {manifest.version} is not newer than the installed version {have_version}")
    if manifest.is_delta and manifest.base_version != have_version:
        raise BundleError("wrong_base", f"delta {manifest.version} applies on version {manifest.base_version}, this device has {have_version if have_version is not None else 'no list'}")
    if manifest.is_delta and have and manifest.code_salt != have.code_salt:
        raise BundleError("bad_manifest", "a delta must keep its base list's code_salt")
    if now is not None:
        _check_time(manifest, clock.as_reading(now))


def _check_time(manifest: Manifest, reading: "clock.Reading") -> None:
    if manifest.clock_reset:  # HQ's signed recovery: judged by the wall clock alone
        reading = reading.of_wall()
    if manifest.expires_at <= reading.now:
        raise BundleError("bundle_expired", f"bundle expired at {timefmt.format(manifest.expires_at)}")
    latest = clock.latest_issue(reading)
    if manifest.issued_at > latest:
        raise BundleError(
            "issued_in_future",
            f"bundle is issued at {timefmt.format(manifest.issued_at)}, later than this "
            f"device's time {timefmt.format(reading.now)} ({reading.source} clock) allows "
            f"({timefmt.format(latest)}); importing it would move the clock floor ahead. "
            "Check the device's and HQ's clocks (docs/technician.md, 'Clock far ahead')")


_STAGE_ROWS = (
    "INSERT INTO codes_staging (seq, code_hash, reward_id, valid_from, valid_until, max_uses, "
    "stores, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A fast-path block (bundle.Columns) in one statement: SQLite counts n = 0..count-1,
# cuts the n-th hash out of one BLOB and looks its attributes up by the n-th byte.
_STAGE_COLUMNS = """
WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < :count)
INSERT INTO codes_staging (seq, code_hash, reward_id, valid_from, valid_until, max_uses,
                           stores, revoked)
SELECT :base + n, substr(:hashes, n * 32 + 1, 32), a.reward_id, a.valid_from, a.valid_until,
       a.max_uses, a.stores, a.revoked
FROM i JOIN temp.codes_attrs AS a ON a.key = hex(substr(:attrs, n + 1, 1))
"""
# The same when every record of the block has the same attributes (no lookup per row).
_STAGE_UNIFORM = """
WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < :count)
INSERT INTO codes_staging (seq, code_hash, reward_id, valid_from, valid_until, max_uses,
                           stores, revoked)
SELECT :base + n, substr(:hashes, n * 32 + 1, 32), :reward_id, :valid_from, :valid_until,
       :max_uses, :stores, :revoked
FROM i
"""
_ATTRS = ("reward_id", "valid_from", "valid_until", "max_uses", "stores", "revoked")
# Applies the staged records to a codes table in key order (fast B-tree appends);
# ``seq`` keeps bundle order for a code listed twice: a put replaces the whole row,
# a revoke keeps the row and marks it revoked (or adds a bare revoked row).
_MERGE = """
INSERT INTO {table} (code_hash, reward_id, valid_from, valid_until, max_uses, stores, revoked)
SELECT code_hash, reward_id, valid_from, valid_until, max_uses, stores, revoked
FROM codes_staging WHERE true ORDER BY code_hash, seq
ON CONFLICT (code_hash) DO UPDATE SET
  reward_id = iif(excluded.revoked, reward_id, excluded.reward_id),
  valid_from = iif(excluded.revoked, valid_from, excluded.valid_from),
  valid_until = iif(excluded.revoked, valid_until, excluded.valid_until),
  max_uses = iif(excluded.revoked, max_uses, excluded.max_uses),
  stores = iif(excluded.revoked, stores, excluded.stores),
  revoked = excluded.revoked
"""
_LIVE_STAGED = ("SELECT count(*) FROM codes WHERE revoked = 0 AND code_hash IN "
                "(SELECT code_hash FROM codes_staging)")


def _save_list(conn, manifest: Manifest, count: int) -> None:
    conn.execute("DELETE FROM code_list")
    conn.execute(
        "INSERT INTO code_list VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            manifest.program, manifest.version, manifest.base_version,
            timefmt.format(manifest.issued_at), timefmt.format(manifest.expires_at),
            manifest.key_id, manifest.code_salt, json.dumps(manifest.rewards, ensure_ascii=False),
            manifest.sha256, count, timefmt.format(datetime.now(UTC)),
        ),
    )
    floor = Store.get_meta_conn(conn, "clock_floor")
    issued = timefmt.format(manifest.issued_at)
    if floor is None or issued > floor or manifest.clock_reset:
        Store.set_meta(conn, "clock_floor", issued)


def _drop_staging(conn) -> None:
    """Remove import scratch tables, also those a crash or power cut left behind."""
    conn.execute("DROP TABLE IF EXISTS codes_staging")
    conn.execute("DROP TABLE IF EXISTS codes_new")
    conn.execute("DROP TABLE IF EXISTS codes_old")
    conn.execute("DROP TABLE IF EXISTS temp.codes_attrs")


def _stage(store: Store, source, manifest: Manifest, progress: Progress | None) -> None:
    """Stream every record into ``codes_staging`` in short transactions (the kiosk keeps
    recording redemptions meanwhile). Appends only: no index, so it is cheap."""
    conn = store.conn
    _drop_staging(conn)
    conn.execute(
        "CREATE TABLE codes_staging (seq INTEGER PRIMARY KEY, code_hash BLOB NOT NULL, "
        "reward_id TEXT, valid_from INTEGER, valid_until INTEGER, "
        "max_uses INTEGER NOT NULL DEFAULT 1, stores TEXT, revoked INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute(
        "CREATE TEMP TABLE codes_attrs (key TEXT PRIMARY KEY, reward_id TEXT, valid_from INTEGER, "
        "valid_until INTEGER, max_uses INTEGER, stores TEXT, revoked INTEGER)"
    )
    done, total, pending, size = 0, manifest.record_count, [], 0
    for shape, rows in _prefetch(bundle.iter_rows(source, manifest)):
        pending.append((shape, rows))
        size += len(rows)
        if size >= BATCH:
            _write_runs(store, pending, done)
            done, pending, size = done + size, [], 0
            if progress:
                progress(done, total)
    _write_runs(store, pending, done)
    if progress:
        progress(done + size, total)


def _prefetch(items: Iterator, depth: int = 4) -> Iterator:
    """Run ``items`` (read, gunzip, hash, parse) in a helper thread while the caller
    writes to SQLite, which releases the GIL while it works: the two overlap on a
    multi-core Pi. At most ``depth`` items wait in memory; errors re-raise here."""
    box: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry) -> None:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put(("item", item))
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))

    thread = threading.Thread(target=produce, name="bundle-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _write_runs(store: Store, runs: list, seq: int) -> None:
    """Append runs to codes_staging; ``seq`` (records before them) keeps bundle order."""
    if not runs:
        return
    with store.transaction() as tx:
        for shape, rows in runs:
            if shape == "cols" and len(rows.table) == 1:
                tx.execute(_STAGE_UNIFORM, {"count": len(rows), "base": seq + 1,
                                            "hashes": rows.hashes,
                                            **dict(zip(_ATTRS, rows.table[0], strict=True))})
            elif shape == "cols":
                tx.execute("DELETE FROM temp.codes_attrs")
                tx.executemany("INSERT INTO temp.codes_attrs VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(f"{i:02X}", *attr) for i, attr in enumerate(rows.table)])
                tx.execute(_STAGE_COLUMNS, {"count": len(rows), "base": seq + 1,
                                            "hashes": rows.hashes, "attrs": rows.attrs})
            else:
                tx.executemany(_STAGE_ROWS, [(seq + 1 + i, *row) for i, row in enumerate(rows)])
            seq += len(rows)


def _swap_snapshot(store: Store, manifest: Manifest) -> None:
    """One transaction: build the new table in key order, swap it in, record the list."""
    with store.transaction() as tx:
        check_applicable(manifest, current(store), manifest.program)
        ddl = tx.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'codes'").fetchone()[0]
        tx.execute(ddl.replace("codes", "codes_new", 1))
        tx.execute(_MERGE.format(table="codes_new"))
        count = tx.execute("SELECT count(*) FROM codes_new WHERE revoked = 0").fetchone()[0]
        tx.execute("ALTER TABLE codes RENAME TO codes_old")
        tx.execute("ALTER TABLE codes_new RENAME TO codes")
        _save_list(tx, manifest, count)
    store.conn.execute("DROP TABLE codes_old")


def _merge_delta(store: Store, manifest: Manifest) -> None:
    """One transaction: re-check the base, apply the staged records, record the list."""
    with store.transaction() as tx:
        have = current(store)
        check_applicable(manifest, have, manifest.program)
        before = tx.execute(_LIVE_STAGED).fetchone()[0]
        tx.execute(_MERGE.format(table="codes"))
        after = tx.execute(_LIVE_STAGED).fetchone()[0]
        _save_list(tx, manifest, have.code_count - before + after)


def import_bundle(store: Store, source: bundle.Source, trusted: Mapping[str, Ed25519PublicKey],
                  program: str, *, now: datetime | None = None,
                  progress: Progress | None = None) -> Manifest:
    """Verify and import a bundle; on any rejection the current list stays as it was.

    ``now`` is the device's time (a :class:`kiosk.core.clock.Reading` also says how far
    it can be trusted); without it expiry and issue time are not checked. A database
    error (disk full) is a :class:`StoreError`; the current list stays then too."""
    manifest = bundle.read_manifest(source, trusted)
    check_applicable(manifest, current(store), program, now)
    with open(store.path.with_name(store.path.name + ".import-lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError("busy", "another code list import is running; try again when it ends") from None
        try:
            _stage(store, source, manifest, progress)
            if manifest.is_delta:
                _merge_delta(store, manifest)
            else:
                _swap_snapshot(store, manifest)
        except sqlite3.Error as exc:
            raise StoreError(f"code list import failed, the current list stays: {exc}") from exc
        finally:
            try:
                _drop_staging(store.conn)
            except sqlite3.Error:  # e.g. still no space: the next import drops them
                pass
    return manifest
