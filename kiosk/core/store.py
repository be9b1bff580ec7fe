"""The device's one SQLite database: code list, redemption ledger, outbox.

Opened by both processes (``kiosk`` and ``kiosk-sync``) in WAL mode with
``synchronous=FULL``; each state change that must survive a power cut is one
transaction. Schema changes are named migrations recorded in ``migrations``, each
applied whole inside one ``BEGIN IMMEDIATE`` (plain :mod:`sqlite3`: see
docs/architecture.md, "Storage").
"""

import errno
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiosk.core import timefmt
from kiosk.core.bundle import ListInfo
from kiosk.errors import DiskFullError, StoreError
from kiosk.i18n import Msg

DB_NAME = "kiosk.sqlite"
BUSY_TIMEOUT_S = 10.0

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE code_list (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            program TEXT NOT NULL, version INTEGER NOT NULL, base_version INTEGER,
            issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, key_id TEXT NOT NULL,
            code_salt BLOB NOT NULL, rewards TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
            code_count INTEGER NOT NULL, imported_at TEXT NOT NULL
        );
        CREATE TABLE codes (
            code_hash BLOB PRIMARY KEY, reward_id TEXT, valid_from INTEGER,
            valid_until INTEGER, max_uses INTEGER NOT NULL DEFAULT 1, stores TEXT,
            revoked INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE redemptions (
            id TEXT PRIMARY KEY, seq INTEGER, device TEXT NOT NULL, store TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('redeem', 'void')), voids TEXT,
            code_hash TEXT NOT NULL, reward_id TEXT, list_version INTEGER,
            at TEXT NOT NULL, clock TEXT NOT NULL, staff TEXT,
            origin TEXT NOT NULL DEFAULT 'local', masked_code TEXT, voided_by TEXT
        );
        CREATE INDEX redemptions_code ON redemptions (code_hash);
        CREATE INDEX redemptions_at ON redemptions (at);
        CREATE TABLE code_uses (
            code_hash TEXT PRIMARY KEY, uses INTEGER NOT NULL,
            last_at TEXT, last_device TEXT, last_store TEXT
        ) WITHOUT ROWID;
        CREATE TABLE outbox (
            event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX outbox_seq ON outbox (seq);
        """,
    ),
    (
        # Durable print queue (kiosk/printing.py): a receipt that failed stays here,
        # with its error, until it is printed; staff see and reprint it.
        "0002_print_jobs",
        """
        CREATE TABLE print_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            redemption_id TEXT NOT NULL, reprint INTEGER NOT NULL DEFAULT 0,
            lang TEXT NOT NULL DEFAULT 'en',
            state TEXT NOT NULL CHECK (state IN ('pending', 'printed', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0, fault TEXT, error TEXT,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL, printed_at TEXT
        );
        CREATE INDEX print_jobs_state ON print_jobs (state, id);
        CREATE INDEX print_jobs_redemption ON print_jobs (redemption_id);
        """,
    ),
    (
        # A remote redeem looks for a void of it that arrived first (ledger.apply_remote).
        "0003_redemptions_voids",
        "CREATE INDEX redemptions_voids ON redemptions (voids)",
    ),
    (
        # Each code list lives in its own file (kiosk/core/codelist.py); the row names
        # them. NULL = a list imported before this change, still in the ``codes`` table.
        "0004_list_files",
        """
        ALTER TABLE code_list ADD COLUMN snapshot_file TEXT;
        ALTER TABLE code_list ADD COLUMN overlay_file TEXT;
        DROP TABLE IF EXISTS codes_staging;
        DROP TABLE IF EXISTS codes_new;
        DROP TABLE IF EXISTS codes_old
        """,
    ),
    (
        # The counter's audit trail (kiosk/core/audit.py; SCHEMA there is the same).
        "0005_audit",
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL,
            source TEXT, verdict TEXT, code_hash TEXT, masked_code TEXT, reward_id TEXT,
            redemption_id TEXT, note TEXT
        );
        CREATE INDEX audit_at ON audit (at)
        """,
    ),
]


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def statements(script: str) -> list[str]:
    """The SQL statements of a migration, split where SQLite says one is complete (a
    ``;`` inside a trigger body or a string does not end one). ``executescript`` cannot
    be used: it commits the migration's transaction first."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip():
        found.append(current.strip())  # the last statement may lack its ';'
    return [s for s in found if s.strip(" \n;")]


def disk_full(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full" and for ENOSPC/EFBIG."""
    if isinstance(exc, DiskFullError):
        return False  # already reported as such
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG)

@dataclass(frozen=True)
class CurrentList(ListInfo):
    """The installed list: its manifest header (the same type as a received one), how
    many codes it holds, when it came and the files that hold it."""

    code_count: int
    imported_at: datetime
    snapshot_file: str | None = None
    overlay_file: str | None = None
    manifest_sha256: str | None = None  # of the signed manifest it came with


class Store:
    """The database, migrated to the newest schema on open."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._tx_lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = connect(self.path)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(Msg("database {path} is unusable: {error}", path=self.path, error=exc)) from exc
        except OSError as exc:
            raise StoreError(Msg("cannot open database {path}: {error}", path=self.path, error=exc)) from exc

    @classmethod
    def in_dir(cls, data_dir: Path) -> "Store":
        return cls(Path(data_dir) / DB_NAME)

    def close(self) -> None:
        """Close after any transaction another thread is in (closing a connection under a
        running statement crashes the interpreter; a later use gets a clear error)."""
        with self._tx_lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: takes the write lock first, so checks inside are race-free.

        Threads sharing this Store (UI thread, sync thread) take turns: one connection
        can hold only one transaction, so a thread lock serialises them first."""
        with self._tx_lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:  # also when COMMIT itself failed (disk full)
                    self.conn.execute("ROLLBACK")
                if disk_full(exc):
                    raise DiskFullError(Msg(
                        "database {path}: the disk is full; the change was not recorded "
                        "(everything recorded before is kept); free space and try again",
                        path=self.path)) from exc
                raise

    def current_list(self, conn: sqlite3.Connection | None = None) -> CurrentList | None:
        """Which code list is installed (the ``code_list`` row), or None when none is.

        The one place to ask: the UI, the doctor, the commands, the ledger and the sync
        agent all read it here. ``conn``: inside a transaction on this database."""
        row = (conn or self.conn).execute(
            "SELECT program, version, base_version, issued_at, expires_at, key_id, code_salt, "
            "rewards, code_count, imported_at, snapshot_file, overlay_file, manifest_sha256 "
            "FROM code_list WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return CurrentList(
            row[0], row[1], row[2], timefmt.parse(row[3]), timefmt.parse(row[4]), row[5],
            bytes(row[6]), json.loads(row[7]), row[8], timefmt.parse(row[9]), row[10], row[11],
            row[12],
        )

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        """The rows of a query as dicts keyed by column name."""
        cursor = self.conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    @staticmethod
    def _pending(conn: sqlite3.Connection) -> list[str]:
        """Names of migrations not applied yet (a plain read: no lock is taken)."""
        try:
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            done = set()
        return [name for name, _sql in MIGRATIONS if name not in done]

    def _migrate(self) -> None:
        """Apply new migrations. Opening an up-to-date database only reads, so a
        read-only command never waits behind a writer (WAL readers never wait)."""
        if not self._pending(self.conn):
            return
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?)",
                             (name, datetime.now(UTC).isoformat()))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.get_meta_conn(self.conn, key)
        return default if value is None else value

    @staticmethod
    def get_meta_conn(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
