"""Writing signed code bundles (the HQ side of wire contract v1).

Used by ``kiosk-hq sign`` and by tests and benchmarks. Writes into a temporary
directory next to the target and renames it into place only when everything is
written, so a failure never leaves a half-written bundle.
"""

import base64
import csv
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.core import bundle, codes, timefmt
from kiosk.errors import CsvError
from kiosk.i18n import Msg

CHUNK_RECORDS = 100_000
CSV_COLUMNS = ("code", "reward_id", "valid_from", "valid_until", "max_uses", "stores")


@dataclass
class Spec:
    program: str
    version: int
    key_id: str
    code_salt: bytes
    rewards: dict
    base_version: int | None = None
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_days: float = 30.0
    clock_reset: bool = False  # a signed recovery list: devices reset their clock floor


def new_salt() -> bytes:
    return os.urandom(32)


def _time_or_none(text: str, line: int, name: str) -> str | None:
    if not text.strip():
        return None
    try:
        return timefmt.format(timefmt.parse(text))
    except ValueError:
        raise CsvError(line, Msg("{name} {value} is not a date/time (use RFC 3339, e.g. {example})",
                                  name=name, value=repr(text), example="2026-12-31T23:59:59Z")) from None


def _csv_record(row: dict, line: int, salt: bytes, rewards: Mapping) -> dict:
    op = (row.get("op") or "put").strip().lower()
    code = (row.get("code") or "").strip()
    if not codes.normalise(code):
        raise CsvError(line, Msg("empty code"))
    if op == "revoke":
        return {"op": "revoke", "code_hash": codes.code_hash(salt, code)}
    if op != "put":
        raise CsvError(line, Msg("op must be put or revoke, not {value}", value=repr(op)))
    reward_id = (row.get("reward_id") or "").strip()
    if reward_id not in rewards:
        raise CsvError(line, Msg("reward_id {value} is not in the rewards table", value=repr(reward_id)))
    max_uses_text = (row.get("max_uses") or "1").strip() or "1"
    if not (max_uses_text.isascii() and max_uses_text.isdigit()) or int(max_uses_text) < 1:
        raise CsvError(line, Msg("max_uses must be a positive whole number, not {value}", value=repr(max_uses_text)))
    stores = [s.strip() for s in (row.get("stores") or "").split(";") if s.strip()]
    return {
        "op": "put",
        "code_hash": codes.code_hash(salt, code),
        "reward_id": reward_id,
        "valid_from": _time_or_none(row.get("valid_from") or "", line, "valid_from"),
        "valid_until": _time_or_none(row.get("valid_until") or "", line, "valid_until"),
        "max_uses": int(max_uses_text),
        "stores": stores or None,
    }


def records_from_csv(path: Path, salt: bytes, rewards: Mapping) -> Iterator[dict]:
    """Stream bundle records from a codes CSV, validating each row."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("code",) if c not in header]
        if missing:
            raise CsvError(1, Msg("header lacks column(s) {missing}; expected {columns}",
                                    missing=", ".join(missing), columns=",".join(CSV_COLUMNS)))
        for row in reader:
            if None in row:
                raise CsvError(reader.line_num, Msg("more fields than the header has"))
            yield _csv_record(row, reader.line_num, salt, rewards)


def _write_chunks(records: Iterable[dict], out: Path, per_chunk: int) -> list[dict]:
    """The chunk files and their manifest entries: name, sha256 and records, plus
    ``size`` (file bytes) and ``ndjson_size`` (unpacked bytes), which bound how much
    a device reads and unpacks before it refuses an altered chunk."""
    chunks, fh, count, n, unpacked = [], None, 0, 0, 0

    def close():
        fh.close()
        name = f"chunk-{n:05d}.ndjson.gz"
        data = (out / name).read_bytes()
        chunks.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(),
                       "records": count, "size": len(data), "ndjson_size": unpacked})

    for record in records:
        if fh is None:
            fh = gzip.open(out / f"chunk-{n:05d}.ndjson.gz", "wb", compresslevel=6)
            count = unpacked = 0
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        fh.write(line)
        unpacked += len(line)
        count += 1
        if count >= per_chunk:
            close()
            fh, n = None, n + 1
    if fh is not None:
        close()
    return chunks


def manifest_bytes(spec: Spec, chunks: list[dict]) -> bytes:
    body = {
        "format": bundle.FORMAT,
        "program": spec.program,
        "version": spec.version,
        "base_version": spec.base_version,
        "issued_at": timefmt.format(spec.issued_at),
        "expires_at": timefmt.format(spec.issued_at + timedelta(days=spec.expires_days)),
        "key_id": spec.key_id,
        "code_salt": base64.b64encode(spec.code_salt).decode(),
        "rewards": spec.rewards,
        "chunks": chunks,
    }
    if spec.clock_reset:
        body["clock_reset"] = True
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")


def write(spec: Spec, records: Iterable[dict], key: Ed25519PrivateKey, out: Path,
          *, per_chunk: int = CHUNK_RECORDS, tar: bool = False) -> Path:
    """Write a signed bundle directory at ``out`` (and ``out.tar`` if asked)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new output directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        chunks = _write_chunks(records, tmp, per_chunk)
        raw = manifest_bytes(spec, chunks)
        (tmp / bundle.MANIFEST).write_bytes(raw)
        (tmp / bundle.SIGNATURE).write_bytes(key.sign(raw))
        if tar:
            write_tar(tmp, out.with_name(out.name + ".tar"), arcname=out.name)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_tar(directory: Path, target: Path, arcname: str) -> Path:
    part = target.with_name(target.name + ".part")
    try:
        with tarfile.open(part, "w") as tar:
            tar.add(directory, arcname=arcname)
        part.rename(target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target
