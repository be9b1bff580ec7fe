"""Swap a kiosk's SD card without losing a redemption: an encrypted backup file.

``kiosk backup --to DIR`` writes one file, ``kiosk-backup-DEVICE-STAMP.kbk``, holding
the device's config folder (kiosk.toml and the files it names: broker password and
CA, trusted keys) and a consistent snapshot of its database (code list, redemption
ledger, unsent outbox, print queue), so the replacement card continues as the same
device: pending redemptions are sent from it and a code redeemed on the old card is
still refused.

**Encryption.** The file is AES-256-GCM encrypted with a key derived by scrypt
(n=2**15, r=8, p=1) from a passphrase the technician carries (HQ hands one out).
A passphrase, not a device or HQ secret, because a restore must work on a blank
replacement card, offline (a swap is often needed exactly when the network is
down): there is nothing on that card yet to derive a key from. A lost stick holds
no credential in clear; only the plain header (device, store, program, when, how
many pending events) is readable, so a technician can tell backups apart.

**Format** (``kiosk-backup/1``)::

    b"KIOSKBK1\\n"  u32 header length  header JSON  then chunks
    chunk = u32 ciphertext length + AES-GCM(nonce = prefix7 || u32 counter || last-flag)

Every chunk authenticates the header bytes too (associated data), its position and
whether it is the last, so a truncated, reordered or edited file is refused. The
plaintext is a gzip'd tar streamed through 1 MiB chunks (memory stays small for a
large code list).
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kiosk.core import atomic, codelist, timefmt
from kiosk.core.store import DB_NAME
from kiosk.errors import KioskError
from kiosk.i18n import Msg

MAGIC = b"KIOSKBK1\n"
FORMAT = "kiosk-backup/1"
SUFFIX = ".kbk"
CHUNK = 1 << 20
SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}
MIN_PASSPHRASE = 12
CONFIG_PREFIX = "config/"
DB_MEMBER = "data/" + DB_NAME
LISTS_MEMBER = "data/" + codelist.list_dir(Path(DB_NAME)).name  # data/kiosk.sqlite.lists


class BackupError(KioskError, ValueError):
    """A backup cannot be written or restored. ``reason`` is a stable word."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_passphrase(passphrase: str) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupError("weak_passphrase",
                          Msg("the backup passphrase must have at least {least} characters",
                              least=MIN_PASSPHRASE))
    return passphrase.encode("utf-8")


def _key(passphrase: str, salt: bytes, params: dict) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"])
    return kdf.derive(check_passphrase(passphrase))


def _key_check(key: bytes) -> str:
    """Tells a wrong passphrase from a damaged file (costs a guesser a scrypt run, as
    the first chunk's tag would)."""
    return hashlib.sha256(b"kiosk-backup key check\0" + key).hexdigest()[:16]


# -- what the database says about itself ---------------------------------------------

def db_summary(conn: sqlite3.Connection) -> dict:
    """Counts that tell two copies of one device's database apart (which is newer)."""
    def one(sql):
        return conn.execute(sql).fetchone()[0]
    return {
        "local_events": one("SELECT count(*) FROM redemptions WHERE origin = 'local'"),
        "max_seq": one("SELECT coalesce(max(seq), 0) FROM redemptions WHERE origin = 'local'"),
        "last_at": one("SELECT max(at) FROM redemptions WHERE origin = 'local'"),
        "pending": one("SELECT count(*) FROM outbox"),
        "list_version": one("SELECT max(version) FROM code_list"),
    }


def _local_ids(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT id FROM redemptions WHERE origin = 'local'")}


# -- the encrypted container -----------------------------------------------------------

class _Encryptor(io.RawIOBase):
    """A write-only stream that encrypts what it gets in numbered chunks."""

    def __init__(self, out, key: bytes, prefix: bytes, aad: bytes):
        self.out, self.aead, self.prefix, self.aad = out, AESGCM(key), prefix, aad
        self.buf, self.counter = bytearray(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buf += data
        while len(self.buf) > CHUNK:  # keep one chunk back: the last one is flagged
            self._emit(bytes(self.buf[:CHUNK]), last=False)
            del self.buf[:CHUNK]
        return len(data)

    def _emit(self, data: bytes, last: bool) -> None:
        nonce = self.prefix + struct.pack(">IB", self.counter, int(last))
        sealed = self.aead.encrypt(nonce, data, self.aad)
        self.out.write(struct.pack(">I", len(sealed)) + sealed)
        self.counter += 1

    def finish(self) -> None:
        self._emit(bytes(self.buf), last=True)
        self.buf.clear()


def _decrypted_chunks(fh, key: bytes, prefix: bytes, aad: bytes) -> Iterator[bytes]:
    aead, counter = AESGCM(key), 0
    while True:
        size = fh.read(4)
        if len(size) < 4:
            raise BackupError("damaged", Msg("the backup file is truncated (its last part is missing)"))
        sealed = fh.read(struct.unpack(">I", size)[0])
        for last in (False, True):
            nonce = prefix + struct.pack(">IB", counter, int(last))
            try:
                data = aead.decrypt(nonce, sealed, aad)
                break
            except InvalidTag:
                continue
        else:
            raise BackupError("damaged", Msg("the backup file is damaged (a part does not verify); "
                                             "nothing was changed"))
        yield data
        counter += 1
        if last:
            if fh.read(1):
                raise BackupError("damaged", Msg("the backup file has data after its end"))
            return


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n


def read_header(path: Path) -> tuple[dict, bytes, int]:
    """The plain header of a backup file, its raw bytes and where the chunks start."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise BackupError("not_backup", Msg("{path} is not a kiosk backup file", path=path))
            (size,) = struct.unpack(">I", fh.read(4))
            raw = fh.read(size)
            header = json.loads(raw)
            if header.get("format") != FORMAT:
                raise BackupError("not_backup", Msg("{path}: unknown backup format {format}", path=path,
                                                       format=repr(header.get("format"))))
            return header, raw, fh.tell()
    except (OSError, struct.error, ValueError) as exc:
        if isinstance(exc, BackupError):
            raise
        raise BackupError("not_backup", Msg("{path}: cannot read the backup header ({error})", path=path,
                                             error=exc)) from None


# -- backup ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """What to back up: the config file, the files it names (relative), the database."""

    config_path: Path
    config_files: list[PurePosixPath]
    db_path: Path
    device: str
    store: str
    program: str


def list_files(db: Path) -> list[str]:
    """The code list files (snapshot, overlay) the database at ``db`` uses."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT snapshot_file, overlay_file FROM code_list WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # no list, or a database from before list files
        return []
    finally:
        conn.close()
    return [name for name in (row or ()) if name]


def snapshot_db(db_path: Path, into: Path) -> Path:
    """A consistent copy of a live WAL database (SQLite's online backup API)."""
    target = into / DB_NAME
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()
    return target


def write(source: Source, out_dir: Path, passphrase: str, *, now: datetime | None = None) -> dict:
    """Write an encrypted backup of ``source`` into ``out_dir``; returns its header + path.

    The file is written under a temporary name, flushed to the stick, renamed, and
    then read back and decrypted completely (a USB stick can lose writes).
    """
    check_passphrase(passphrase)
    if not source.db_path.is_file():
        raise BackupError("no_data", Msg("no database at {path}: nothing to back up", path=source.db_path))
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise BackupError("no_target", Msg("{folder} is not a folder (is the USB stick mounted?)", folder=out_dir))
    now = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix=".kiosk-backup-", dir=source.db_path.parent) as tmp:
        snap = snapshot_db(source.db_path, Path(tmp))
        conn = sqlite3.connect(str(snap))
        try:
            summary = db_summary(conn)
        finally:
            conn.close()
        salt, prefix = secrets.token_bytes(16), secrets.token_bytes(7)
        header = {"format": FORMAT, "device": source.device, "store": source.store,
                  "program": source.program, "created_at": timefmt.format(now),
                  **summary, "kdf": {"name": "scrypt", "salt": salt.hex(), **SCRYPT},
                  "cipher": "AES-256-GCM", "nonce_prefix": prefix.hex()}
        raw = json.dumps(header, sort_keys=True).encode()
        key = _key(passphrase, salt, SCRYPT)
        header["key_check"] = _key_check(key)
        raw = json.dumps(header, sort_keys=True).encode()
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        final = out_dir / f"kiosk-backup-{source.device}-{stamp}{SUFFIX}"
        part = final.with_name(final.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + struct.pack(">I", len(raw)) + raw)
            enc = _Encryptor(fh, key, prefix, raw)
            with tarfile.open(fileobj=enc, mode="w|gz") as tar:
                tar.add(source.config_path, arcname=CONFIG_PREFIX + "kiosk.toml")
                for rel in source.config_files:
                    tar.add(source.config_path.parent / rel, arcname=f"{CONFIG_PREFIX}{rel}")
                tar.add(snap, arcname=DB_MEMBER)
                for name in list_files(snap):  # the code list the database points at
                    tar.add(codelist.list_dir(source.db_path) / name,
                            arcname=f"{LISTS_MEMBER}/{name}")
            enc.finish()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, final)
        atomic.fsync_path(out_dir)
    verify(final, passphrase)
    return {**header, "path": str(final), "bytes": final.stat().st_size}



# -- restore -----------------------------------------------------------------------------

def find(path: Path) -> Path:
    """``path`` itself, or the newest backup file in the folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.glob(f"kiosk-backup-*{SUFFIX}")) if path.is_dir() else []
    if not found:
        raise BackupError("no_backup", Msg("no {pattern} file in {path}", pattern="kiosk-backup-*" + SUFFIX, path=path))
    return max(found, key=lambda p: read_header(p)[0]["created_at"])


def _members(path: Path, passphrase: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    header, raw, start = read_header(path)
    kdf = header["kdf"]
    key = _key(passphrase, bytes.fromhex(kdf["salt"]), kdf)
    if _key_check(key) != header.get("key_check"):
        raise BackupError("wrong_passphrase", Msg("wrong passphrase for this backup: nothing was changed"))
    with open(path, "rb") as fh:
        fh.seek(start)
        reader = io.BufferedReader(_ChunkReader(
            _decrypted_chunks(fh, key, bytes.fromhex(header["nonce_prefix"]), raw)))
        try:
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:
                for member in tar:
                    yield member, tar
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BackupError("damaged", Msg("the backup file is damaged ({error})", error=exc)) from None


def verify(path: Path, passphrase: str) -> dict:
    """Decrypt the whole file and check what it holds; returns its header."""
    names = [m.name for m, _ in _members(path, passphrase)]
    if DB_MEMBER not in names or CONFIG_PREFIX + "kiosk.toml" not in names:
        raise BackupError("damaged", Msg("{path} lacks the database or kiosk.toml", path=path))
    return read_header(path)[0]


def unpack(path: Path, passphrase: str, into: Path) -> dict:
    """Decrypt into the folder ``into`` (config/ and data/); returns the header."""
    for member, tar in _members(path, passphrase):
        rel = PurePosixPath(member.name)
        if rel.is_absolute() or ".." in rel.parts or not (member.isfile() or member.isdir()):
            raise BackupError("damaged", Msg("unexpected entry {name} in the backup", name=repr(member.name)))
        target = into / rel
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tar.extractfile(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o600)
    return read_header(path)[0]


def newer_here(current_db: Path, backup_db: Path) -> "Msg | None":
    """Why the device's current database must not be replaced by the backup, or None.

    Refused when the device recorded redemptions the backup does not have (they
    would be lost), holds unsent events the backup lacks, or has had events acked by
    HQ that the backup still holds as pending (it is past the backup).
    """
    if not current_db.is_file():
        return None
    here = sqlite3.connect(f"file:{current_db}?mode=ro", uri=True, timeout=30)
    there = sqlite3.connect(f"file:{backup_db}?mode=ro", uri=True)
    try:
        try:
            mine = _local_ids(here)
            unsent = {r[0] for r in here.execute("SELECT event_id FROM outbox")}
            info = db_summary(here)
        except sqlite3.OperationalError:  # an empty or foreign file: nothing of ours
            return None
        theirs_pending = {r[0] for r in there.execute("SELECT event_id FROM outbox")}
        theirs = _local_ids(there) | theirs_pending
    finally:
        here.close()
        there.close()
    extra = (mine | unsent) - theirs
    if extra:
        return Msg("this device already has {count} redemption event(s) the backup does not (last at "
                   "{last}, {pending} unsent); restoring would lose them", count=len(extra),
                   last=info["last_at"], pending=info["pending"])
    acked_since = (theirs_pending & mine) - unsent
    if acked_since:
        return Msg("this device has already sent {count} of the backup's pending event(s) to HQ: it is "
                   "newer than the backup", count=len(acked_since))
    return None

