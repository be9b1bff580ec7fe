"""The counter's audit trail: every scan, verdict, confirm, cancel, timeout and undo.

So that a disputed redemption can be explained afterwards ("scanned 14:02:11, ready,
confirmed by touch 14:02:14"), the UI records each step twice:

* as one structured log line on the ``kiosk.audit`` logger (``audit {json}``; under
  systemd it lands in the journal: ``journalctl -u kiosk -g kiosk.audit``), at once;
* as a row of the ``audit`` table in the device database, kept ``[audit] keep_days``
  days (default 90; older rows are deleted at the first write and then daily).

The sync agent sends the rows to HQ as low-priority activity (``sync/activity.py``:
only after the redemptions; HQ's friction report reads them).

Entries never hold a raw payload (a Wi-Fi QR holds its password): only the code's
hash and last four characters, or for a QR that is not a code, its length.

Database writes never delay a redemption: :class:`AuditLog` queues entries and one
background thread writes them in batches on its own connection with
``synchronous=NORMAL`` (WAL: a power cut may lose the last second of entries, never
corrupt anything, and the redemptions themselves are written with ``FULL``).
"""

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.core import timefmt
from kiosk.core.store import Store
from kiosk.i18n import Msg

log = logging.getLogger("kiosk.audit")
log.setLevel(logging.INFO)  # recorded even when the kiosk logs only warnings

DEFAULT_KEEP_DAYS = 90
PRUNE_EVERY = 24 * 3600.0  # s
KINDS = ("scan", "held", "verdict", "confirm", "confirm_failed", "cancel", "timeout",
         "again", "undo", "undo_failed")
_STOP = object()
FIELDS = ("source", "verdict", "code_hash", "masked_code", "reward_id", "redemption_id", "note")
# The table is made by the "0005_audit" migration in kiosk/core/store.py.


def keep_days(cfg) -> int:
    """``[audit] keep_days`` (whole days, at least 1) from a loaded Config."""
    section = cfg.section("audit")
    days = section.get("keep_days", int, DEFAULT_KEEP_DAYS)
    if days < 1:
        raise section.error("keep_days", Msg("must be a whole number of days, at least 1"))
    return days


def entry(kind: str, result=None, **fields) -> dict:
    """An audit entry for ``kind``; ``result`` (a ledger Result) fills the code fields."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit kind {kind!r}")
    row = {"at": timefmt.format(datetime.now(UTC)), "kind": kind}
    if result is not None:
        row.update(verdict=str(result.verdict), code_hash=result.code_hash,
                   masked_code=result.masked_code, reward_id=result.reward_id,
                   redemption_id=result.redemption_id)
    row.update({k: v for k, v in fields.items() if v is not None})
    unknown = set(row) - {"at", "kind", *FIELDS}
    if unknown:
        raise ValueError(f"unknown audit fields {sorted(unknown)}")
    return row


class AuditLog:
    """Logs entries at once and writes them to ``audit`` from a background thread."""

    def __init__(self, path: Path | str, *, keep: int = DEFAULT_KEEP_DAYS, background: bool = True):
        self.path, self.keep = Path(path), keep
        self._queue: queue.Queue = queue.Queue()
        self._store: Store | None = None
        self._next_prune = 0.0
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="kiosk-audit", daemon=True)
            self._thread.start()

    # -- recording ---------------------------------------------------------------
    def record(self, kind: str, result=None, **fields) -> dict:
        row = entry(kind, result, **fields)
        log.info("audit %s", json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        self._queue.put(row)
        if self._thread is None:
            self.flush()
        return row

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.path)
            self._store.conn.execute("PRAGMA synchronous=NORMAL")
        if time.monotonic() >= self._next_prune:  # at the first write, then daily
            self._next_prune = time.monotonic() + PRUNE_EVERY
            self.prune()
        return self._store

    def _write(self, rows: list[dict]) -> None:
        store = self._open()
        with store.transaction() as tx:
            tx.executemany(
                "INSERT INTO audit (at, kind, source, verdict, code_hash, masked_code, reward_id, "
                "redemption_id, note) VALUES (:at, :kind, :source, :verdict, :code_hash, "
                ":masked_code, :reward_id, :redemption_id, :note)",
                [{k: r.get(k) for k in ("at", "kind", *FIELDS)} for r in rows])

    def _drain(self, item) -> tuple[list[dict], list[threading.Event], bool]:
        """``item`` and what else is queued: entries, flush markers, and whether to stop."""
        rows, markers, stop = [], [], False
        while True:
            if item is _STOP:
                stop = True
            elif isinstance(item, threading.Event):
                markers.append(item)
            elif item is not None:
                rows.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows, markers, stop

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded so far is in the database."""
        if self._thread is not None:
            done = threading.Event()
            self._queue.put(done)
            done.wait(timeout)
            return
        rows, _, _ = self._drain(None)
        if rows:
            self._write(rows)

    def _run(self) -> None:
        while True:
            rows, markers, stop = self._drain(self._queue.get())
            if rows:
                try:
                    self._write(rows)
                except Exception as exc:  # the trail is kept in the journal anyway
                    log.warning("audit: could not write %d entries: %s", len(rows), exc)
            for marker in markers:
                marker.set()
            if stop:
                return

    # -- reading and housekeeping -------------------------------------------------
    def entries(self, since: datetime | None = None, kinds: tuple[str, ...] = ()) -> list[dict]:
        """Entries written so far, oldest first (call :meth:`flush` or wait before)."""
        sql, params = "SELECT * FROM audit WHERE 1", []
        if since is not None:
            sql += " AND at >= ?"
            params.append(timefmt.format(since))
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += list(kinds)
        store = Store(self.path)
        try:
            return store.rows(sql + " ORDER BY id", params)
        finally:
            store.close()

    def prune(self, now: datetime | None = None) -> int:
        """Delete entries older than ``keep`` days; returns how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.keep)
        store = self._open()
        with store.transaction() as tx:
            return tx.execute("DELETE FROM audit WHERE at < ?", (timefmt.format(cutoff),)).rowcount

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        if self._store is not None:
            self._store.close()
            self._store = None
