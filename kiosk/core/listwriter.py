"""Writing one code list file (see :mod:`kiosk.core.codelist` for the layout).

A :class:`Builder` creates the file under a temporary name, stages records in a
scratch database beside it (appends only), sorts them into the list's table in key
order, and :meth:`Builder.finish` flushes and renames it. Nothing here touches the
ledger's database; :mod:`kiosk.core.importer` decides when a finished file is used.
"""

import secrets
import sqlite3
from pathlib import Path

from kiosk.core import atomic, codelist
from kiosk.core.bundle import Manifest

_LEGACY_ATTRS = ("INSERT INTO main.attrs (reward_id, valid_from, valid_until, max_uses, stores) "
                 "SELECT DISTINCT reward_id, valid_from, valid_until, max_uses, stores FROM old.codes "
                 "EXCEPT SELECT reward_id, valid_from, valid_until, max_uses, stores FROM main.attrs")
_LEGACY_CODES = (f"INSERT INTO main.codes (h, a) SELECT substr(c.code_hash, 1, {codelist.KEY_BYTES}), "
                 "t.id * 2 + c.revoked FROM old.codes AS c JOIN main.attrs AS t ON "
                 "t.reward_id IS c.reward_id AND t.valid_from IS c.valid_from AND "
                 "t.valid_until IS c.valid_until AND t.max_uses IS c.max_uses AND t.stores IS c.stores "
                 "ORDER BY c.code_hash")


# A fast-path block (bundle.Columns) in one statement: SQLite counts n = 0..count-1,
# cuts the first key bytes of the n-th hash out of one BLOB and maps the n-th byte to
# its attribute value.
_STAGE_COLUMNS = f"""
WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < :count)
INSERT INTO stage.staging (seq, h, a)
SELECT :base + n, substr(:hashes, n * 32 + 1, {codelist.KEY_BYTES}), m.a
FROM i JOIN temp.amap AS m ON m.k = hex(substr(:attrs, n + 1, 1))
"""
_STAGE_UNIFORM = f"""
WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < :count)
INSERT INTO stage.staging (seq, h, a)
SELECT :base + n, substr(:hashes, n * 32 + 1, {codelist.KEY_BYTES}), :a FROM i
"""
# Staged ``a``: a put is 2 x attribute id (even), a revoke is 1. Applied in key order
# (fast appends); ``seq`` keeps bundle order for a code listed twice: a put replaces
# the row, a revoke keeps it and marks it revoked (or adds a bare revoked row).
_UPSERT = "ON CONFLICT (h) DO UPDATE SET a = iif(excluded.a & 1, a | 1, excluded.a)"
_MERGE_FULL = f"INSERT INTO main.codes (h, a) SELECT h, a FROM stage.staging WHERE true ORDER BY h, seq {_UPSERT}"
# A delta's revoke of a code only the snapshot has keeps the snapshot's attributes.
_MERGE_DELTA = (
    "INSERT INTO main.codes (h, a) SELECT s.h, iif(s.a & 1, coalesce((SELECT a FROM snap.codes "
    "WHERE h = s.h), 0) | 1, s.a) FROM stage.staging AS s WHERE true ORDER BY s.h, s.seq "
    + _UPSERT)
_LIVE_BEFORE = ("SELECT count(*) FROM (SELECT DISTINCT h FROM stage.staging) AS s WHERE coalesce("
                "(SELECT a FROM main.codes WHERE h = s.h), (SELECT a FROM snap.codes WHERE h = s.h), 1) & 1 = 0")
_LIVE_AFTER = ("SELECT count(*) FROM (SELECT DISTINCT h FROM stage.staging) AS s "
               "JOIN main.codes AS c ON c.h = s.h WHERE c.a & 1 = 0")


class Builder:
    """One new list file, written under a temporary name and published by :meth:`finish`."""

    def __init__(self, folder: Path, version: int, kind: str):
        stem = f"v{version}-{kind}-{secrets.token_hex(4)}"
        self.name = stem + codelist.SUFFIX
        self.final, self.tmp = folder / self.name, folder / (stem + ".building")
        self.stage_path = folder / (stem + ".stage")
        conn = sqlite3.connect(self.tmp, isolation_level=None, check_same_thread=False, uri=False)
        self.conn = conn
        for pragma in ("journal_mode=OFF", "synchronous=OFF"):
            conn.execute(f"PRAGMA {pragma}")
        for sql in codelist.SCHEMA:
            conn.execute(sql)
        conn.execute("ATTACH DATABASE ? AS stage", (str(self.stage_path),))
        conn.execute("PRAGMA stage.journal_mode=OFF")
        conn.execute("PRAGMA stage.synchronous=OFF")
        conn.execute("CREATE TABLE stage.staging (seq INTEGER PRIMARY KEY, h BLOB NOT NULL, "
                     "a INTEGER NOT NULL)")
        conn.execute("CREATE TEMP TABLE amap (k TEXT PRIMARY KEY, a INTEGER NOT NULL)")
        self.attr_ids: dict[tuple, int] = {}

    def attach(self, alias: str, path: Path) -> None:
        self.conn.execute("ATTACH DATABASE ? AS " + alias, (codelist.read_uri(path),))

    def load_attrs(self, schema: str | None) -> None:
        """Start from another file's attribute rows (same ids), or a fresh table."""
        if schema:
            self.conn.execute(f"INSERT INTO main.attrs SELECT * FROM {schema}.attrs")
        else:
            self.conn.execute("INSERT INTO main.attrs VALUES (0, ?, ?, ?, ?, ?, ?)", codelist.BARE_REVOKE)
        for row in self.conn.execute("SELECT id, reward_id, valid_from, valid_until, max_uses, "
                                     "stores, uses FROM main.attrs WHERE id > 0"):
            self.attr_ids[tuple(row[1:])] = row[0]

    def a_of(self, attr: tuple) -> int:
        """Staged ``a`` of (reward_id, valid_from, valid_until, max_uses, stores, revoked
        [, uses])."""
        if attr[5]:
            return 1
        key = (*attr[:5], attr[6] if len(attr) > 6 else 0)
        got = self.attr_ids.get(key)
        if got is None:
            got = len(self.attr_ids) + 1
            self.conn.execute("INSERT INTO main.attrs VALUES (?, ?, ?, ?, ?, ?, ?)", (got, *key))
            self.attr_ids[key] = got
        return got * 2

    def stage(self, runs: list, seq: int) -> None:
        """Append runs to the scratch table; ``seq`` (records before them) keeps order."""
        tx = self.conn
        tx.execute("BEGIN")
        for shape, rows in runs:
            if shape == "cols" and len(rows.table) == 1:
                tx.execute(_STAGE_UNIFORM, {"count": len(rows), "base": seq + 1,
                                            "hashes": rows.hashes, "a": self.a_of(rows.table[0])})
            elif shape == "cols":
                tx.execute("DELETE FROM temp.amap")
                tx.executemany("INSERT INTO temp.amap VALUES (?, ?)",
                               [(f"{i:02X}", self.a_of(attr)) for i, attr in enumerate(rows.table)])
                tx.execute(_STAGE_COLUMNS, {"count": len(rows), "base": seq + 1,
                                            "hashes": rows.hashes, "attrs": rows.attrs})
            else:
                tx.executemany("INSERT INTO stage.staging VALUES (?, ?, ?)",
                               [(seq + 1 + i, codelist.key_of(row[0]), self.a_of(row[1:]))
                                for i, row in enumerate(rows)])
            seq += len(rows)
        tx.execute("COMMIT")

    def finish(self, manifest: Manifest, kind: str) -> str:
        """Close, flush and rename the file to its final name; returns that name."""
        conn = self.conn
        conn.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)", [
            ("program", manifest.program), ("version", str(manifest.version)), ("kind", kind),
            ("manifest_sha256", manifest.sha256)])
        conn.close()
        self.conn = None
        self.stage_path.unlink(missing_ok=True)
        atomic.fsync_path(self.tmp)
        self.tmp.replace(self.final)
        atomic.fsync_path(self.final.parent)
        return self.name

    def discard(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for path in (self.tmp, self.stage_path):
            path.unlink(missing_ok=True)

    def merge_full(self) -> int:
        """Sort the staged records into the list's table; returns the live code count."""
        self.conn.execute(_MERGE_FULL)
        return self.conn.execute("SELECT count(*) FROM main.codes WHERE a & 1 = 0").fetchone()[0]

    def merge_delta(self, live_before_list: int) -> int:
        """Apply staged delta records over the copied overlay (``snap`` attached);
        returns the new live code count of the whole list."""
        before = self.conn.execute(_LIVE_BEFORE).fetchone()[0]
        self.conn.execute(_MERGE_DELTA)
        after = self.conn.execute(_LIVE_AFTER).fetchone()[0]
        return live_before_list - before + after

    def copy_legacy(self, db_path: Path) -> None:
        """Fill the file from a pre-list-file ``codes`` table (read only)."""
        self.conn.execute("ATTACH DATABASE ? AS old", (str(db_path),))
        self.conn.execute(_LEGACY_ATTRS)
        self.conn.execute(_LEGACY_CODES)
        self.conn.execute("DETACH DATABASE old")
