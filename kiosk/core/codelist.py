"""Code lists on disk: one SQLite file per list version, beside the device database.

The ledger's database (``kiosk.sqlite``) only names the files in use (the
``code_list`` row's ``snapshot_file`` and ``overlay_file``); the codes themselves live
in ``kiosk.sqlite.lists/``. A file is written whole by the importer under a temporary
name, fsynced and renamed, and never changed after the ``code_list`` row names it, so
readers open it ``immutable`` (no locks at all) and an import never takes the
ledger's write lock except for the one-row switch.

- A **snapshot** file holds a full list; an **overlay** file the records of the deltas
  applied since (a delta writes a new overlay: the previous one plus its records).
  A lookup asks the overlay first, then the snapshot.
- Each file: ``codes (h BLOB PRIMARY KEY, a INTEGER) WITHOUT ROWID`` where ``h`` is the
  first :data:`KEY_BYTES` bytes of the code's HMAC-SHA256 and ``a`` = 2 x attribute id +
  revoked; ``attrs`` holds the distinct (reward, validity, max_uses, stores, uses HQ
  already counted) rows
  (id 0 = the attributes of a bare revoke). An overlay's ``attrs`` include its
  snapshot's, with the same ids. About 25 bytes per code; the false-match risk of the
  truncated key is worked out in docs/formats.md.
- A list imported before list files existed stays in the main database's ``codes``
  table (``snapshot_file`` NULL) until the next import replaces it.
"""

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from kiosk.core import timefmt
from kiosk.core.verdict import CodeRow

KEY_BYTES = 16
SUFFIX = ".sqlite"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS attrs (id INTEGER PRIMARY KEY, reward_id TEXT, "
    "valid_from INTEGER, valid_until INTEGER, max_uses INTEGER NOT NULL, stores TEXT, "
    "uses INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS codes (h BLOB PRIMARY KEY, a INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)",
)
BARE_REVOKE = (None, None, None, 1, None, 0)  # attribute row 0

_FIND = ("SELECT c.a, t.reward_id, t.valid_from, t.valid_until, t.max_uses, t.stores, t.uses "
         "FROM codes AS c JOIN attrs AS t ON t.id = c.a >> 1 WHERE c.h = ?")
_FIND_LEGACY = ("SELECT revoked, reward_id, valid_from, valid_until, max_uses, stores, 0 "
                "FROM codes WHERE code_hash = ?")


def list_dir(db_path: Path) -> Path:
    """The folder of list files for the database at ``db_path``."""
    return db_path.with_name(db_path.name + ".lists")


def key_of(digest: bytes) -> bytes:
    """The stored key of a code: the first :data:`KEY_BYTES` bytes of its HMAC."""
    return digest[:KEY_BYTES]


def read_uri(path: Path) -> str:
    """SQLite's URI for reading a finished list file: immutable, so SQLite takes no lock.
    (``urllib.parse.quote`` is POSIX's ``pathname2url``, without urllib.request's
    http/ssl imports: about 1.6 MB in the UI process.)"""
    return f"file:{quote(str(path))}?mode=ro&immutable=1"


def open_file(path: Path) -> sqlite3.Connection:
    """A read connection to a finished list file (:func:`read_uri`)."""
    conn = sqlite3.connect(read_uri(path), uri=True, check_same_thread=False, isolation_level=None)
    conn.execute("SELECT count(*) FROM attrs").fetchone()  # fails now if the file is gone
    return conn


def row_of(found) -> CodeRow | None:
    """A ``_FIND`` result as a :class:`CodeRow` (``found[0]`` = a, or legacy revoked)."""
    if found is None:
        return None
    return CodeRow(
        reward_id=found[1], valid_from=timefmt.from_epoch(found[2]),
        valid_until=timefmt.from_epoch(found[3]), max_uses=found[4],
        stores=tuple(json.loads(found[5])) if found[5] else None, revoked=bool(found[0] & 1),
    )


@dataclass
class View:
    """The files of one installed list, open for lookups (overlay first)."""

    snapshot_file: str | None
    overlay_file: str | None
    conns: tuple[sqlite3.Connection, ...]
    legacy: sqlite3.Connection | None = None  # main db, for a pre-list-file list

    def find(self, digest: bytes) -> tuple[CodeRow | None, int]:
        """The code's row and the uses HQ counted before this list (0 if unlisted)."""
        if self.legacy is not None:
            found = self.legacy.execute(_FIND_LEGACY, (digest,)).fetchone()
            return row_of(found), 0
        key = key_of(digest)
        for conn in self.conns:
            found = conn.execute(_FIND, (key,)).fetchone()
            if found is not None:
                return row_of(found), found[6]
        return None, 0

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


def open_view(db_path: Path, main: sqlite3.Connection, snapshot_file: str | None,
              overlay_file: str | None) -> View:
    """Open the files the ``code_list`` row names (raises sqlite3 errors if gone)."""
    if snapshot_file is None:
        return View(None, None, (), legacy=main)
    folder = list_dir(db_path)
    conns = []
    try:
        for name in (overlay_file, snapshot_file):
            if name:
                conns.append(open_file(folder / name))
    except sqlite3.Error:
        for conn in conns:
            conn.close()
        raise
    return View(snapshot_file, overlay_file, tuple(conns))



def remove_unused(db_path: Path, keep: set[str]) -> list[str]:
    """Delete list files and import leftovers not in ``keep`` (only while holding the
    import lock). A process that still has an old file open keeps reading it (POSIX);
    it opens the new files at its next lookup."""
    folder = list_dir(db_path)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if path.name in keep or path.name in (PROGRESS, SALT_WAIT):
            continue
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


PROGRESS = "import-progress.json"  # the running import's progress (importer)
SALT_WAIT = "salt-wait.json"  # a list with a new salt waiting for HQ (importer)
