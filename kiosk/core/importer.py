"""Importing a verified bundle as a new code list file, streaming and atomically.

A list never shares a database file with the ledger (see :mod:`kiosk.core.codelist`):
an import writes a new file under a temporary name (records are appended to a
scratch file beside it, then sorted into the list's table in key order), fsyncs and
renames it, and only then switches the ``code_list`` row of the ledger's database to
it in one short transaction (the only moment it takes the ledger's write lock, a few
milliseconds). A full snapshot writes a new snapshot file; a delta writes a new
overlay file (the previous overlay plus its records). Until the switch commits the
current list is untouched; a rejection, a crash or a power cut at any step leaves
the old list in use, and the next import deletes the leftovers.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.core import atomic, bundle, clock, codelist, listwriter, timefmt
from kiosk.core.bundle import Manifest
from kiosk.core.store import CurrentList, Store
from kiosk.errors import BundleError
from kiosk.i18n import Msg

if TYPE_CHECKING:  # cryptography loads on the first signature check (kiosk.core.keys)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BATCH = 50_000
Progress = Callable[[int, int], None]  # (records done, records total)
STAGE_SHARE = 0.8  # of the progress figure: reading and staging; the rest is sorting


def check_applicable(manifest: Manifest, have: CurrentList | None, program: str,
                     now: datetime | clock.Reading | None = None) -> None:
    """Reject a wrong program, a rollback, a delta on the wrong base, an expired list,
    and (given the device's time) one issued too far ahead of it."""
    if manifest.program != program:
        raise BundleError("wrong_program", Msg("bundle is for program {bundle}, this device runs {device}",
                                                  bundle=repr(manifest.program), device=repr(program)))
    have_version = have.version if have else None
    if have_version is not None and manifest.version <= have_version:
        raise BundleError("rollback", Msg("bundle version {version} is not newer than the installed version {have}",
                                             version=manifest.version, have=have_version))
    if manifest.is_delta and manifest.base_version != have_version:
        raise BundleError("wrong_base", Msg("delta {version} applies on version {base}, this device has {have}",
                                               version=manifest.version, base=manifest.base_version,
                                               have=have_version if have_version is not None else Msg("no list")))
    if manifest.is_delta and have and manifest.code_salt != have.code_salt:
        raise BundleError("bad_manifest", Msg("a delta must keep its base list's code_salt"))
    if now is not None:
        _check_time(manifest, clock.as_reading(now))


def _check_time(manifest: Manifest, reading: clock.Reading) -> None:
    if manifest.clock_reset:  # HQ's signed recovery: judged by the wall clock alone
        reading = reading.of_wall()
    if manifest.expires_at <= reading.now:
        raise BundleError("bundle_expired", Msg("bundle expired at {time}", time=timefmt.format(manifest.expires_at)))
    latest = clock.latest_issue(reading)
    if manifest.issued_at > latest:
        raise BundleError(
            "issued_in_future",
            Msg("bundle is issued at {issued}, later than this device's time {now} ({source} clock) "
                "allows ({latest}); importing it would move the clock floor ahead. Check the device's "
                "and HQ's clocks (docs/technician.md, 'Clock far ahead')",
                issued=timefmt.format(manifest.issued_at), now=timefmt.format(reading.now),
                source=reading.source, latest=timefmt.format(latest)))


# -- progress, for a person waiting (CLI bar, staff Sync page, heartbeat) -----------
@dataclass(frozen=True)
class ImportProgress:
    version: int
    percent: int
    phase: str  # "staging" (reading records) or "sorting" (building the list's table)
    done: int
    total: int

    def text(self) -> str:
        return f"list v{self.version} loading {self.percent}%"


def import_progress(store: Store) -> ImportProgress | None:
    """The import running now for this database (any process), or None."""
    path = codelist.list_dir(store.path) / codelist.PROGRESS
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)  # an importer killed mid-way left the file behind
        return ImportProgress(int(data["version"]), int(data["percent"]), str(data["phase"]),
                              int(data["done"]), int(data["total"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Reporter:
    """Calls the caller's progress function and keeps the progress file current
    (rewritten when the percentage changes, removed at the end)."""

    def __init__(self, folder: Path, manifest: Manifest, callback: Progress | None):
        self.path, self.version = folder / codelist.PROGRESS, manifest.version
        self.total, self.callback, self.last = manifest.record_count, callback, None

    def __call__(self, done: int, phase: str = "staging") -> None:
        share = done / self.total if self.total else 1.0
        percent = int(share * STAGE_SHARE * 100) if phase == "staging" else int(STAGE_SHARE * 100)
        if (percent, phase) != self.last:
            self.last = (percent, phase)
            atomic.write_text(self.path, json.dumps({
                "pid": os.getpid(), "version": self.version, "percent": percent, "phase": phase,
                "done": done, "total": self.total}), 0o644)
        if self.callback and phase == "staging":
            self.callback(done, self.total)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _stage_all(builder: listwriter.Builder, source, manifest: Manifest, report: _Reporter) -> None:
    """Stream every record into the builder's scratch table, in batches."""
    done, pending, size = 0, [], 0
    report(0)
    for shape, rows in _prefetch(bundle.iter_rows(source, manifest)):
        pending.append((shape, rows))
        size += len(rows)
        if size >= BATCH:
            builder.stage(pending, done)
            done, pending, size = done + size, [], 0
            report(done)
    if pending:
        builder.stage(pending, done)
    report(done + size)


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


# -- a new code salt waits for HQ --------------------------------------------------------
# Uses are counted per code hash, and a new salt changes every hash. A list with a new
# salt carries the uses HQ knew when it signed (``uses`` of its records), so the device
# switches only when HQ had every local redemption by then: none waits in the outbox,
# and the last acknowledgement came before the list was issued. Until then the old
# list stays in use (``salt_wait``), and status, the Sync page and doctor say why.
SALT_WAIT = codelist.SALT_WAIT
ACKED_AT = "acked_at"  # meta key: when HQ last acknowledged events (ledger.ack)


def salt_gate(store: Store, conn, manifest: Manifest, have: CurrentList | None) -> None:
    """Raise ``salt_wait``/``salt_stale`` (and note it for status) if ``manifest`` brings a
    new salt before HQ had every local redemption; see the comment above."""
    if have is None or manifest.is_delta or manifest.code_salt == have.code_salt:
        return
    pending = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    acked = Store.get_meta_conn(conn, ACKED_AT)
    issued = timefmt.format(manifest.issued_at)
    if pending:
        reason, why = "salt_wait", Msg("{pending} local redemption event(s) are not yet confirmed by HQ; it "
                                        "switches when the sync agent has sent them", pending=pending)
    elif acked and acked > issued:
        reason, why = "salt_stale", Msg("HQ confirmed this device's redemptions at {acked}, after the "
                                         "list was signed ({issued}): HQ must sign the new salt's list "
                                         "again so that it counts them", acked=acked, issued=issued)
    else:
        return
    atomic.write_text(codelist.list_dir(store.path) / SALT_WAIT, json.dumps({
        "version": manifest.version, "pending": pending, "why": why, "why_msg": why.to_json()}), 0o644)
    raise BundleError(reason, Msg("version {version} has a new code salt and {why}; version {have} "
                                  "stays in use", version=manifest.version, why=why, have=have.version))


def salt_wait(store: Store) -> dict | None:
    """A list with a new salt waiting for HQ: {version, pending (events now), why}, or None."""
    path = codelist.list_dir(store.path) / SALT_WAIT
    try:
        data = json.loads(path.read_text())
        version = int(data["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    have = store.current_list()
    if have is not None and have.version >= version:
        return None
    pending = store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    said = data.get("why_msg")
    why = Msg.from_json(said) if isinstance(said, dict) else str(data.get("why", ""))
    if data.get("pending") and not pending:
        why = Msg("HQ has confirmed the redemptions it waited for; the list is tried again shortly")
    return {"version": version, "pending": pending, "why": why}


# -- switching -------------------------------------------------------------------------
def _switch(store: Store, manifest: Manifest, count: int, snapshot: str, overlay: str | None,
            expect: CurrentList | None) -> None:
    """The one short transaction on the ledger's database: name the new files."""
    with store.transaction() as tx:
        have = store.current_list(tx)
        check_applicable(manifest, have, manifest.program)
        salt_gate(store, tx, manifest, have)
        if (have and expect) and (have.snapshot_file, have.overlay_file) != (
                expect.snapshot_file, expect.overlay_file):
            raise BundleError("busy", Msg("the installed list changed during the import; try again"))
        tx.execute("DELETE FROM code_list")
        tx.execute(
            "INSERT INTO code_list (id, program, version, base_version, issued_at, expires_at, "
            "key_id, code_salt, rewards, manifest_sha256, code_count, imported_at, "
            "snapshot_file, overlay_file) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (manifest.program, manifest.version, manifest.base_version,
             timefmt.format(manifest.issued_at), timefmt.format(manifest.expires_at),
             manifest.key_id, manifest.code_salt, json.dumps(manifest.rewards, ensure_ascii=False),
             manifest.sha256, count, timefmt.format(datetime.now(UTC)), snapshot, overlay))
        floor = Store.get_meta_conn(tx, "clock_floor")
        issued = timefmt.format(manifest.issued_at)
        if floor is None or issued > floor or manifest.clock_reset:
            Store.set_meta(tx, "clock_floor", issued)


def _build_snapshot(store: Store, source, manifest: Manifest, report: _Reporter) -> tuple[str, int]:
    builder = listwriter.Builder(codelist.list_dir(store.path), manifest.version, "snap")
    try:
        builder.load_attrs(None)
        _stage_all(builder, source, manifest, report)
        report(manifest.record_count, "sorting")
        count = builder.merge_full()
        return builder.finish(manifest, "snapshot"), count
    except BaseException:
        builder.discard()
        raise


def _build_overlay(store: Store, source, manifest: Manifest, have: CurrentList,
                   report: _Reporter) -> tuple[str, int]:
    folder = codelist.list_dir(store.path)
    builder = listwriter.Builder(folder, manifest.version, "delta")
    try:
        builder.attach("snap", folder / have.snapshot_file)
        if have.overlay_file:
            builder.attach("prev", folder / have.overlay_file)
            builder.load_attrs("prev")
            builder.conn.execute("INSERT INTO main.codes SELECT h, a FROM prev.codes")
        else:
            builder.load_attrs("snap")
        _stage_all(builder, source, manifest, report)
        report(manifest.record_count, "sorting")
        count = builder.merge_delta(have.code_count)
        return builder.finish(manifest, "overlay"), count
    except BaseException:
        builder.discard()
        raise


def _convert_legacy(store: Store, have: CurrentList) -> CurrentList:
    """Move a list imported before list files existed into a snapshot file (read from
    the ledger's database, never locking it), switch to it, then empty the old table in
    short transactions."""
    builder = listwriter.Builder(codelist.list_dir(store.path), have.version, "snap")
    try:
        builder.load_attrs(None)
        builder.copy_legacy(store.path)
        name = builder.finish(_LegacyManifest(have), "snapshot")  # type: ignore[arg-type]
    except BaseException:
        builder.discard()
        raise
    with store.transaction() as tx:
        tx.execute("UPDATE code_list SET snapshot_file = ?, overlay_file = NULL WHERE id = 1 "
                   "AND version = ?", (name, have.version))
    _clear_legacy(store)
    return store.current_list()


@dataclass(frozen=True)
class _LegacyManifest:
    have: CurrentList

    @property
    def program(self):
        return self.have.program

    @property
    def version(self):
        return self.have.version

    sha256 = "legacy"


def _clear_legacy(store: Store, batch: int = 20_000) -> None:
    """Empty the pre-list-file ``codes`` table without holding the write lock long."""
    while True:
        with store.transaction() as tx:
            gone = tx.execute("DELETE FROM codes WHERE code_hash IN (SELECT code_hash FROM codes "
                              "LIMIT ?)", (batch,)).rowcount
        if gone < batch:
            return
        time.sleep(0.005)  # let a waiting writer in


def import_bundle(store: Store, source: bundle.Source, trusted: Mapping[str, Ed25519PublicKey],
                  program: str, *, now: datetime | None = None,
                  progress: Progress | None = None) -> Manifest:
    """Verify and import a bundle; on any rejection the current list stays as it was."""
    manifest = bundle.read_manifest(source, trusted)
    check_applicable(manifest, store.current_list(), program, now)
    with open(store.path.with_name(store.path.name + ".import-lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError("busy", Msg("another code list import is running; try again when it ends")) from None
        folder = codelist.list_dir(store.path)
        folder.mkdir(exist_ok=True)
        have = store.current_list()
        check_applicable(manifest, have, program)
        salt_gate(store, store.conn, manifest, have)
        codelist.remove_unused(store.path, _names(have))  # leftovers of a crash
        report = _Reporter(folder, manifest, progress)
        try:
            if manifest.is_delta:
                if have.snapshot_file is None:
                    have = _convert_legacy(store, have)
                name, count = _build_overlay(store, source, manifest, have, report)
                _switch(store, manifest, count, have.snapshot_file, name, have)
            else:
                name, count = _build_snapshot(store, source, manifest, report)
                _switch(store, manifest, count, name, None, have)
        except (sqlite3.Error, OSError) as exc:  # e.g. the disk is full
            report.close()
            codelist.remove_unused(store.path, _names(have))
            raise BundleError("import_failed", Msg("cannot write the new list in {folder}: {error}", folder=folder, error=exc)) from exc
        except BaseException:
            report.close()
            codelist.remove_unused(store.path, _names(have))
            raise
        report.close()
        (folder / SALT_WAIT).unlink(missing_ok=True)
        codelist.remove_unused(store.path, _names(store.current_list()))
        if store.conn.execute("SELECT 1 FROM codes LIMIT 1").fetchone():
            _clear_legacy(store)
    return manifest


def _names(have: CurrentList | None) -> set[str]:
    return {n for n in (have.snapshot_file, have.overlay_file) if n} if have else set()
