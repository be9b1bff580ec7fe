"""HQ's database engine: SQLite (the embedded default, one shop) or PostgreSQL (a chain).

``open_engine(url)`` takes ``sqlite:///path/hq.sqlite``, a plain file path (what
``kiosk-hq collect --db hq.sqlite`` always took) or ``postgresql://user@host/db``. A
:class:`Conn` speaks one SQL dialect to both: statements are written with ``?``
placeholders and the upsert forms both engines share (``ON CONFLICT ... DO``); the few
statements that differ (table options, the cursor column) come from the engine.

Writers take a write lock first (:meth:`Conn.begin_write`): SQLite's ``BEGIN
IMMEDIATE`` (one writer at a time), and on PostgreSQL transaction-scoped advisory
locks. Most writers take the write lock exclusively. Collectors storing events take it
*shared* plus an exclusive lock on each of the codes and event ids they touch
(``keys``, hashed into :data:`KEY_BUCKETS` buckets: PostgreSQL's lock table holds only
``max_locks_per_transaction`` x ``max_connections`` locks in all, 6,400 by default, and
a group of 2,500 events would otherwise take 5,000; taken in one sorted statement, so
two writers never deadlock on them): collectors whose batches share no bucket store
at the same time, and two that race on one code (the same
single-use code redeemed at two kiosks) take turns, so the second sees the first and
flags the conflict exactly once. Readers that page by the events' or conflicts' cursor
column (the API, the webhook dispatcher) read inside :meth:`Conn.settled`, which takes
the write lock exclusively for the moment of the read: it waits for the event writers
in flight, so every row below the highest cursor it sees is committed (a bigserial is
drawn at INSERT, not at COMMIT; without this a reader could pass a row committed late
and never see it).

Schema changes are named migrations, each applied once and recorded in the table
``migrations`` (as on the device), in one transaction with the change.
"""

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from kiosk.errors import KioskError

WRITE_LOCK_KEY = 0x6B696F736B  # the advisory lock id of HQ writers ("kiosk")
KEY_LOCKS = 0x6B69  # first half of the two-int advisory locks on codes and event ids
KEY_BUCKETS = 256  # at most this many such locks per transaction


class DbUrlError(KioskError, ValueError):
    """A database URL kiosk-hq cannot use."""


@dataclass(frozen=True)
class Migration:
    """One named schema change; ``sqlite``/``postgresql`` hold its statements."""

    name: str
    sqlite: Sequence[str]
    postgresql: Sequence[str]


@dataclass(frozen=True)
class Engine:
    url: str
    kind: str  # "sqlite" | "postgresql"
    path: Path | None = None

    @property
    def cursor_column(self) -> str:
        """The events' monotonic column: SQLite's rowid, PostgreSQL's ``n`` (bigserial)."""
        return "rowid" if self.kind == "sqlite" else "n"

    @property
    def display(self) -> str:
        """The URL without a password, for logs and messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        return self.url.replace(f":{parts.password}@", ":***@", 1)

    def connect(self) -> "Conn":
        if self.kind == "sqlite":
            raw = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                  check_same_thread=False)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=FULL")
            return Conn(raw, self)
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the hq extra is not installed
            raise DbUrlError("PostgreSQL needs psycopg: pip install 'redeem-kiosk[hq]'") from None
        try:
            # no automatic prepared statements: after an error inside a pipeline psycopg
            # may believe in one the server never made ("_pg3_5 does not exist")
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                  prepare_threshold=None)
        except psycopg.Error as exc:
            raise DbUrlError(f"cannot connect to {self.display}: {exc}".strip()) from None
        return Conn(raw, self)


def open_engine(url: str | Path) -> Engine:
    """The engine for ``url`` (``sqlite:///PATH``, ``postgresql://...`` or a file path)."""
    text = str(url).strip()
    if text.startswith(("postgresql://", "postgres://")):
        return Engine(text, "postgresql")
    if text.startswith("sqlite:///"):
        rest = text[len("sqlite:///"):]  # as SQLAlchemy: sqlite:///rel, sqlite:////abs
        if not rest:
            raise DbUrlError(f"{text!r} names no file: sqlite:///PATH")
        return Engine(text, "sqlite", Path(rest))
    if "://" in text:
        raise DbUrlError(f"unknown database URL {text!r}: use sqlite:///PATH or "
                         "postgresql://USER@HOST/DB")
    if not text:
        raise DbUrlError("no database given")
    return Engine(f"sqlite:///{text}", "sqlite", Path(text))


class Conn:
    """One connection in autocommit mode; transactions are opened explicitly."""

    def __init__(self, raw, engine: Engine):
        self.raw, self.engine = raw, engine
        self.integrity_errors = _integrity_errors(engine.kind)
        self._leads: dict[str, object] = {}

    def _sql(self, sql: str) -> str:
        return sql if self.engine.kind == "sqlite" else sql.replace("?", "%s")

    def execute(self, sql: str, params: Iterable = ()):
        return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        if self.engine.kind == "sqlite":
            self.raw.executemany(sql, rows)
        else:
            with self.raw.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))

    def insert_rows(self, table: str, columns: Sequence[str], types: Sequence[str],
                    rows: list[Sequence], key: str | None) -> None:
        """``INSERT ... ON CONFLICT key DO NOTHING`` of many rows: one statement with one
        JSON parameter on PostgreSQL (a list of rows: ``json.dumps`` is C, where psycopg
        would build 14 arrays element by element in Python), ``executemany`` on SQLite.
        ``key`` None: a plain INSERT, for rows the caller knows are new (it saves
        PostgreSQL a speculative insertion per row; a duplicate raises)."""
        names = ", ".join(columns)
        on_conflict = f" ON CONFLICT {key} DO NOTHING" if key else ""
        if self.engine.kind == "sqlite":
            self.raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
                                 f"{on_conflict}", rows)
            return
        values = ", ".join(f"(r->>{i})::{t}" for i, t in enumerate(types))
        self.raw.execute(f"INSERT INTO {table} ({names}) SELECT {values} "
                         f"FROM jsonb_array_elements(%s::jsonb) AS r{on_conflict}",
                         (json.dumps(rows, separators=(",", ":")),))

    @contextmanager
    def pipeline(self) -> Iterator["Conn"]:
        """Statements sent to PostgreSQL together: the client waits only when it reads a
        result (and at the end), so a transaction of many statements costs a round
        trip or two. Nothing changes on SQLite (no round trips there)."""
        if self.engine.kind != "postgresql":
            yield self
            return
        try:
            with self.raw.pipeline():
                yield self
        except BaseException:
            # an error aborts the rest of the pipeline, its COMMIT or ROLLBACK too: end
            # the failed transaction here, or the connection is stuck in it
            if not self.raw.closed and self.raw.info.transaction_status != _IDLE():
                self.raw.execute("ROLLBACK")
            raise

    def begin_write(self, keys: Iterable[str] | None = None) -> None:
        """Begin a write transaction holding the write lock: exclusively, or with
        ``keys`` shared plus an exclusive lock on each key (PostgreSQL; SQLite has
        one writer at a time anyway)."""
        if self.engine.kind == "sqlite":
            self.raw.execute("BEGIN IMMEDIATE")
            return
        self.raw.execute("BEGIN")
        if keys is None:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            return
        self.raw.execute("SELECT pg_advisory_xact_lock_shared(%s)", (WRITE_LOCK_KEY,))
        self.raw.execute("SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int4[]) AS k "
                         "ORDER BY k", (KEY_LOCKS, sorted({_bucket(k) for k in keys})))

    @contextmanager
    def write(self, keys: Iterable[str] | None = None) -> Iterator["Conn"]:
        """One write transaction (:meth:`begin_write`): committed at the end, rolled
        back on any exception."""
        self.begin_write(keys)
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    @contextmanager
    def settled(self) -> Iterator["Conn"]:
        """Read by cursor: on PostgreSQL inside a transaction that holds the write lock
        exclusively, so no event writer is in flight (see the module's docstring)."""
        if self.engine.kind == "sqlite":
            yield self
        else:
            with self.write():
                yield self

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")

    def close(self) -> None:
        for held in self._leads.values():
            if hasattr(held, "close"):
                held.close()  # the lock file: its flock goes with it
        self.raw.close()

    def lead(self, role: str) -> bool:
        """Whether this connection is the one ``role`` leader among the processes on
        this database (e.g. one webhook dispatcher although several ``serve`` run).
        Held until the connection closes: a session advisory lock on PostgreSQL, an
        flock on a file beside the SQLite database."""
        if role in self._leads:
            return True
        if self.engine.kind == "postgresql":
            key = int.from_bytes(role.encode()[:7].ljust(7, b"\0"), "big")
            if not self.raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                return False
            self._leads[role] = True
            return True
        import fcntl

        handle = open(f"{self.engine.path}.{role}.lock", "a")  # noqa: SIM115 - kept open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._leads[role] = handle
        return True

    def rows(self, sql: str, params: Iterable = ()) -> list[dict]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def migrate(self, migrations: Sequence[Migration]) -> list[str]:
        """Apply the migrations not yet recorded; returns the names applied now."""
        self.execute("CREATE TABLE IF NOT EXISTS migrations "
                     "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = []
        for m in migrations:
            with self.write():
                done = self.execute("SELECT 1 FROM migrations WHERE name = ?", (m.name,)).fetchone()
                if done is None:
                    for statement in getattr(m, self.engine.kind):
                        self.raw.execute(statement)
                    self.execute("INSERT INTO migrations VALUES (?, ?)",
                                 (m.name, datetime.now(UTC).isoformat(timespec="seconds")))
                    applied.append(m.name)
        return applied


def _IDLE():  # noqa: N802 - psycopg's "no transaction open" status
    from psycopg import pq

    return pq.TransactionStatus.IDLE


def _bucket(key: str) -> int:
    """The lock bucket of a text: two keys in one bucket only make two writers wait."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % KEY_BUCKETS


def _integrity_errors(kind: str) -> tuple[type[BaseException], ...]:
    if kind == "sqlite":
        return (sqlite3.IntegrityError,)
    import psycopg

    return (psycopg.IntegrityError,)


def db_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the database did not take this" on either engine."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, DbUrlError)
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return errors
    return (*errors, psycopg.Error)
