"""Code lists at HQ: signed bundles uploaded to ``kiosk-hq serve``, checked, kept, published.

An owner (dashboard) or an integration (``POST /api/v1/code-lists``) hands HQ a
bundle ``.tar`` made offline with ``kiosk-hq sign --tar``: the signing key never
lives on the server. HQ checks it as a device would (the signature under a key given
to ``serve --trust KEY_ID=PATH``, then every chunk's hash and record), keeps it in the
``--bundles`` folder (one file per program and version, row in ``code_lists``),
records its codes' ``max_uses`` (:meth:`HqDb.load_bundle`) and publishes it with
``kiosk-hq publish``'s code (:func:`sync.hq.publish.publish`) over the collector's own
broker connection. Only if the operator opts in (``serve --signing-key PATH --key-id
ID``) does HQ sign lists itself, from codes sent as JSON or CSV (:func:`sign`): then a
copy of the server is a copy of the key (docs/hq.md, "Code lists").
"""

import csv
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.core import bundle, bundle_writer, ids, keys
from kiosk.errors import BundleError, KioskError
from sync.hq import audit, fleet
from sync.hq.engine import Conn, Engine

DEFAULT_MAX_UPLOAD_MB = 512  # a 10-million-code list is about 265 MB


class ListError(KioskError, ValueError):
    """A list HQ does not take (bad bundle, unknown key, version clash); ``status`` is
    the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Lists:
    """What ``serve`` was given for code lists."""

    folder: Path | None
    trusted: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    max_upload: int = DEFAULT_MAX_UPLOAD_MB << 20
    signer: tuple[str, Ed25519PrivateKey] | None = None  # (key id, key): HQ signs itself
    publisher: Callable[[Path], bundle.Manifest] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ready(self) -> bool:
        return self.folder is not None and bool(self.trusted)

    def incoming(self) -> Path:
        """A new empty file in the folder for an upload being received."""
        if self.folder is None:
            raise ListError("this server keeps no lists: start serve with --bundles DIR "
                            "and --trust KEY_ID=PATH", 409)
        (self.folder / ".incoming").mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".tar", dir=self.folder / ".incoming")
        os.close(fd)
        return Path(name)


def parse_trust(values: list[str]) -> dict[str, Ed25519PublicKey]:
    """``KEY_ID=PATH`` (a public key PEM) for each ``--trust``."""
    trusted = {}
    for value in values:
        key_id, sep, path = value.partition("=")
        if not sep or not key_id.strip() or not path.strip():
            raise ValueError(f"--trust {value!r}: use KEY_ID=PATH of a public key (.pem)")
        try:
            trusted[key_id.strip()] = keys.load_public(Path(path.strip()))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--trust {value!r}: cannot read the public key ({exc})") from None
    return trusted


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check(path: Path, trusted: dict[str, Ed25519PublicKey]) -> tuple[bundle.Manifest, int]:
    """Verify a bundle as a device would: signature under a trusted key, then every
    chunk's hash, count and record. Returns the manifest and its record count."""
    source = bundle.open_source(path)
    try:
        manifest = bundle.read_manifest(source, trusted)
        count = sum(1 for _ in bundle.iter_records(source, manifest))
    finally:
        source.close()
    return manifest, count


def _reason(exc: BundleError, upload: Path) -> str:
    """The refusal without the server's temp path, and without tarfile's list of
    every compression it tried on a file that is no tar at all."""
    text = str(exc).replace(str(upload), "the upload")
    if exc.reason == "bad_archive" and "not a readable tar file" in text:
        text = text.split(" (", 1)[0] + " (make one with kiosk-hq sign --tar)"
    return text


def _file_name(manifest: bundle.Manifest) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", manifest.program)[:60]
    return f"{safe}-v{manifest.version}-{manifest.sha256[:12]}.tar"


def accept(engine: Engine, conn: Conn, lists: Lists, upload: Path, actor: str) -> dict:
    """Check ``upload`` (a .tar in :meth:`Lists.incoming`), keep it, record its codes'
    max_uses; the row of ``code_lists``. The upload file is gone afterwards."""
    try:
        if not lists.ready:
            raise ListError("this server keeps no lists: start serve with --bundles DIR "
                            "and --trust KEY_ID=PATH", 409)
        try:
            manifest, count = check(upload, lists.trusted)
        except BundleError as exc:
            raise ListError(f"not a list HQ can take: {_reason(exc, upload)}") from None
        if not ids.is_name(manifest.program):
            raise ListError(f"not a list HQ can take: program {manifest.program!r} is not "
                            f"a name devices use ({ids.NAME_RULE})")
        with lists.lock:
            old = find(conn, manifest.program, manifest.version)
            if old is not None:
                if old["manifest_sha256"] != manifest.sha256:
                    raise ListError(f"version {manifest.version} of {manifest.program} is already "
                                    f"stored with other contents (uploaded by {old['uploaded_by']}): "
                                    "sign it as a new version", 409)
                return old
            target = lists.folder / _file_name(manifest)
            os.replace(upload, target)
            try:
                _keep(engine, conn, target, manifest, count, actor)
            except BaseException:
                target.unlink(missing_ok=True)  # no file without its row
                raise
        return find(conn, manifest.program, manifest.version)
    except ListError as exc:
        audit.record(conn, actor, "list.refused", reason=str(exc)[:300])
        raise
    finally:
        upload.unlink(missing_ok=True)


def _keep(engine: Engine, conn: Conn, target: Path, manifest: bundle.Manifest, count: int,
          actor: str) -> None:
    """Record a list moved into the folder: its codes' max_uses, its row, the audit."""
    from sync.hq.db import HqDb

    row = {"program": manifest.program, "version": manifest.version,
           "base_version": manifest.base_version, "key_id": manifest.key_id,
           "records": count, "bytes": target.stat().st_size,
           "manifest_sha256": manifest.sha256, "file": target.name,
           "code_salt": manifest.code_salt.hex(), "issued_at": manifest.issued_at.isoformat(),
           "expires_at": manifest.expires_at.isoformat(), "uploaded_at": _now(),
           "uploaded_by": actor}
    db = HqDb(engine)
    try:
        db.load_bundle(target)  # the codes' max_uses, for the collector's checks
    finally:
        db.close()
    with conn.write():
        conn.execute(f"INSERT INTO code_lists ({', '.join(row)}) "
                     f"VALUES ({', '.join('?' for _ in row)})", list(row.values()))
        audit.record(conn, actor, "list.upload", program=manifest.program,
                     version=manifest.version, base_version=manifest.base_version,
                     records=count, key_id=manifest.key_id)


def find(conn: Conn, program: str, version: int) -> dict | None:
    rows = conn.rows("SELECT * FROM code_lists WHERE program = ? AND version = ?",
                     (program, version))
    return rows[0] if rows else None


def publish(conn: Conn, lists: Lists, program: str, version: int, actor: str) -> dict:
    """Publish a kept list over the collector's broker connection (retained chain)."""
    from sync.hq.common import HqError

    row = find(conn, program, version)
    if row is None or lists.folder is None:
        raise ListError(f"no version {version} of {program} is stored", 404)
    if lists.publisher is None:
        raise ListError("this server has no broker connection to publish with", 409)
    try:
        with lists.lock:
            lists.publisher(lists.folder / row["file"])
    except (HqError, BundleError, OSError) as exc:
        audit.record(conn, actor, "list.publish_failed", program=program, version=version,
                     reason=str(exc)[:300])
        raise ListError(f"could not publish version {version} of {program}: {exc}", 502) from None
    with conn.write():
        conn.execute("UPDATE code_lists SET published_at = ?, published_by = ? "
                     "WHERE program = ? AND version = ?", (_now(), actor, program, version))
        audit.record(conn, actor, "list.publish", program=program, version=version)
    return find(conn, program, version)


def overview(conn: Conn) -> list[dict]:
    """Every kept list, newest first, with the devices that run it (from their
    heartbeats) under ``devices``; ``behind`` lists the program's devices on an older
    version than the newest published one."""
    lists = conn.rows("SELECT * FROM code_lists ORDER BY program, version DESC")
    devices = fleet.devices(conn)
    newest: dict[str, int] = {}
    for row in lists:
        if row["published_at"]:
            newest[row["program"]] = max(newest.get(row["program"], 0), row["version"])
    for row in lists:
        row["devices"] = [d["device"] for d in devices if d["program"] == row["program"]
                          and d["list_version"] == row["version"]]
        row["newest"] = newest.get(row["program"]) == row["version"]
        row["behind"] = [d["device"] for d in devices if row["newest"]
                         and d["program"] == row["program"]
                         and (d["list_version"] or 0) < row["version"]]
    return lists


def by_version(conn: Conn) -> list[dict]:
    """How many devices run each list version, per program (any list, also one
    published with the CLI): ``program``, ``list_version``, ``devices`` (names)."""
    groups: dict[tuple, list[str]] = {}
    for d in fleet.devices(conn):
        groups.setdefault((d["program"], d["list_version"]), []).append(f"{d['store']}/{d['device']}")
    return [{"program": p, "list_version": v, "devices": names}
            for (p, v), names in sorted(groups.items(), key=lambda kv: (kv[0][0], -(kv[0][1] or 0)))]


# -- HQ signs itself (opt-in) ---------------------------------------------------------------
def _latest(conn: Conn, lists: Lists, program: str) -> tuple[dict | None, bundle.Manifest | None]:
    rows = conn.rows("SELECT * FROM code_lists WHERE program = ? ORDER BY version DESC LIMIT 1",
                     (program,))
    if not rows:
        return None, None
    source = bundle.open_source(lists.folder / rows[0]["file"])
    try:
        return rows[0], bundle.parse_manifest(source.read_bytes(bundle.MANIFEST))
    finally:
        source.close()


def rows_from_csv(text: str) -> list[dict]:
    """The rows of a codes CSV (``kiosk-hq sign``'s columns)."""
    reader = csv.DictReader(text.splitlines())
    return list(reader)


def sign(conn: Conn, lists: Lists, program: str, rows: list[dict], *, delta: bool,
         version: int | None = None, rewards: dict | None = None,
         expires_days: float = 30.0) -> Path:
    """A bundle .tar (in :meth:`Lists.incoming`) signed with HQ's key from ``rows``
    (dicts with ``kiosk-hq sign``'s CSV columns). The program keeps its code_salt and,
    unless given, its rewards; the version is the next one unless given; a delta
    builds on the newest kept list."""
    if lists.signer is None:
        raise ListError("HQ holds no signing key: sign the list offline with kiosk-hq sign "
                        "--tar and upload the .tar (or start serve with --signing-key and "
                        "--key-id)", 409)
    if lists.folder is None:
        raise ListError("this server keeps no lists: start serve with --bundles DIR", 409)
    if not isinstance(program, str) or not ids.is_name(program):
        raise ListError(f"program {program!r}: use {ids.NAME_RULE}")
    if not rows:
        raise ListError("no codes given")
    latest, manifest = _latest(conn, lists, program)
    if version is not None and latest is not None and version <= latest["version"]:
        raise ListError(f"version {version} is not newer than version {latest['version']} "
                        f"of {program} kept at HQ", 409)
    if delta and latest is None:
        raise ListError(f"a delta needs a list of {program} kept at HQ to build on; "
                        "send a full list first")
    rewards = rewards or (manifest.rewards if manifest else None)
    if not rewards:
        raise ListError("rewards are missing (reward_id -> {type, value, title}); "
                        "the first list of a program must name them")
    from sync.hq_cli import load_rewards_dict

    try:
        rewards = load_rewards_dict(rewards, "rewards")
    except ValueError as exc:
        raise ListError(str(exc)) from None
    version = version or ((latest["version"] if latest else 0) + 1)
    salt = manifest.code_salt if manifest else bundle_writer.new_salt()
    key_id, key = lists.signer
    spec = bundle_writer.Spec(program=program, version=version, key_id=key_id, code_salt=salt,
                              rewards=rewards, base_version=latest["version"] if delta else None,
                              expires_days=expires_days)
    work = Path(tempfile.mkdtemp(prefix=".sign-", dir=lists.folder))
    try:
        table = work / "codes.csv"
        columns = [*bundle_writer.CSV_COLUMNS, "op"]
        with open(table, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in row.items()})
        records = list(bundle_writer.records_from_csv(table, salt, rewards))
        out = bundle_writer.write(spec, records, key, work / f"{program}-v{version}", tar=True)
        target = lists.incoming()
        os.replace(out.with_name(out.name + ".tar"), target)
        return target
    except bundle_writer.CsvError as exc:
        raise ListError(f"code {exc.line - 1}: {str(exc).partition(': ')[2]}; nothing was "
                        "signed") from None
    except ValueError as exc:  # a column the CSV format does not have, a bad value
        raise ListError(f"{exc}; nothing was signed") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)
