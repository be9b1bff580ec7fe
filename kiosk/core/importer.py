"""Importing a verified bundle into the store, streaming and atomically.

A full snapshot is loaded into ``codes_staging`` in short batches (so the kiosk can
still record redemptions meanwhile) and swapped in by one quick transaction. A delta
is applied in one transaction. Until the swap or commit the current list is
untouched; any failure leaves it exactly as it was.
"""

import fcntl
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.core import bundle, timefmt
from kiosk.core.bundle import Manifest, Record
from kiosk.core.store import Store
from kiosk.errors import BundleError

BATCH = 20_000
Progress = Callable[[int, int], None]  # (records done, records total)

_PUT = (
    "INSERT OR REPLACE INTO {table} "
    "(code_hash, reward_id, valid_from, valid_until, max_uses, stores, revoked) "
    "VALUES (?, ?, ?, ?, ?, ?, 0)"
)
_REVOKE = (
    "INSERT INTO {table} (code_hash, max_uses, revoked) VALUES (?, 1, 1) "
    "ON CONFLICT (code_hash) DO UPDATE SET revoked = 1"
)


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
                     now: datetime | None = None) -> None:
    """Reject a wrong program, a rollback, a delta on the wrong base, an expired list."""
    if manifest.program != program:
        raise BundleError("wrong_program", f"bundle is for program {manifest.program!r}, this device runs {program!r}")
    have_version = have.version if have else None
    if have_version is not None and manifest.version <= have_version:
        raise BundleError("rollback", f"bundle version {manifest.version} is not newer than the installed version {have_version}")
    if manifest.is_delta and manifest.base_version != have_version:
        raise BundleError("wrong_base", f"delta {manifest.version} applies on version {manifest.base_version}, this device has {have_version if have_version is not None else 'no list'}")
    if manifest.is_delta and have and manifest.code_salt != have.code_salt:
        raise BundleError("bad_manifest", "a delta must keep its base list's code_salt")
    if now is not None and manifest.expires_at <= now:
        raise BundleError("bundle_expired", f"bundle expired at {timefmt.format(manifest.expires_at)}")


def _row(r: Record) -> tuple:
    return (
        bytes.fromhex(r.code_hash), r.reward_id, timefmt.to_epoch(r.valid_from),
        timefmt.to_epoch(r.valid_until), r.max_uses,
        json.dumps(list(r.stores)) if r.stores else None,
    )


def _write(conn, table: str, batch: list[Record]) -> None:
    puts = [_row(r) for r in batch if r.op == "put"]
    revokes = [(bytes.fromhex(r.code_hash),) for r in batch if r.op == "revoke"]
    if puts:
        conn.executemany(_PUT.format(table=table), puts)
    if revokes:
        conn.executemany(_REVOKE.format(table=table), revokes)


def _batches(records: Iterable[Record], size: int):
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    if floor is None or issued > floor:
        Store.set_meta(conn, "clock_floor", issued)


def _load_snapshot(store: Store, source, manifest: Manifest, progress: Progress | None) -> None:
    conn = store.conn
    conn.execute("DROP TABLE IF EXISTS codes_staging")
    conn.execute(
        "CREATE TABLE codes_staging (code_hash BLOB PRIMARY KEY, reward_id TEXT, "
        "valid_from INTEGER, valid_until INTEGER, max_uses INTEGER NOT NULL DEFAULT 1, "
        "stores TEXT, revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )
    done, total = 0, manifest.record_count
    try:
        for batch in _batches(bundle.iter_records(source, manifest), BATCH):
            with store.transaction() as tx:
                _write(tx, "codes_staging", batch)
            done += len(batch)
            if progress:
                progress(done, total)
        with store.transaction() as tx:
            check_applicable(manifest, current(store), manifest.program)
            count = tx.execute("SELECT count(*) FROM codes_staging WHERE revoked = 0").fetchone()[0]
            tx.execute("ALTER TABLE codes RENAME TO codes_old")
            tx.execute("ALTER TABLE codes_staging RENAME TO codes")
            _save_list(tx, manifest, count)
        conn.execute("DROP TABLE codes_old")
    except BaseException:
        conn.execute("DROP TABLE IF EXISTS codes_staging")
        raise


def _apply_delta(store: Store, source, manifest: Manifest, progress: Progress | None) -> None:
    done, total = 0, manifest.record_count
    with store.transaction() as tx:
        check_applicable(manifest, current(store), manifest.program)
        for batch in _batches(bundle.iter_records(source, manifest), BATCH):
            _write(tx, "codes", batch)
            done += len(batch)
            if progress:
                progress(done, total)
        count = tx.execute("SELECT count(*) FROM codes WHERE revoked = 0").fetchone()[0]
        _save_list(tx, manifest, count)


def import_bundle(store: Store, source: bundle.Source, trusted: Mapping[str, Ed25519PublicKey],
                  program: str, *, now: datetime | None = None,
                  progress: Progress | None = None) -> Manifest:
    """Verify and import a bundle; on any rejection the current list stays as it was."""
    manifest = bundle.read_manifest(source, trusted)
    check_applicable(manifest, current(store), program, now)
    with open(store.path.with_name(store.path.name + ".import-lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError("busy", "another code list import is running; try again when it ends") from None
        if manifest.is_delta:
            _apply_delta(store, source, manifest, progress)
        else:
            _load_snapshot(store, source, manifest, progress)
    return manifest
