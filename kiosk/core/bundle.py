"""Signed code bundles, wire contract v1 (DESIGN.md section 3): reading and verifying.

A bundle is a directory (or a ``.tar`` of one) with ``manifest.json``, ``manifest.sig``
(raw 64-byte Ed25519 signature of the manifest's exact bytes) and gzip NDJSON chunks.
Verification order: signature (under a trusted key id) first, then every other field;
chunk hashes and record counts are checked while the records stream past, so a
million codes never sit in memory, and no further than the sizes the signed manifest
declares (a gzip bomb stops there). The files themselves are opened by
:mod:`kiosk.core.bundle_files`. Every rejection is a :class:`BundleError` with a
stable ``reason``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING

from kiosk.core import keys, timefmt
from kiosk.core.bundle_files import MANIFEST, MAX_CHUNK_BYTES, SIGNATURE, Source
from kiosk.core.bundle_files import DirSource as DirSource  # the bundle's public names
from kiosk.core.bundle_files import TarSource as TarSource
from kiosk.core.bundle_files import open_source as open_source
from kiosk.errors import BundleError
from kiosk.i18n import Msg

if TYPE_CHECKING:  # cryptography loads on the first signature check (kiosk.core.keys)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "kiosk-codes/1"
REWARD_TYPES = ("item", "percent", "amount", "addon")
_CHUNK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_READ = 1 << 16
MAX_MANIFEST = 16 << 20  # bytes; the rewards table and chunk list of a huge list fit easily
_BLOCK = 1 << 21  # decompressed bytes per block (about 16,000 records)
# Bounds on what a file may cost before it is refused (docs/formats.md, "Bounds"). A chunk
# is read at most up to the sizes its signed manifest declares; a manifest without them
# (written before they existed) gets the conservative caps below instead.
MAX_INT = 2**63 - 1  # what SQLite can store; versions and counts beyond it are refused
MAX_LINE = 1 << 16  # one NDJSON record line
RECORD_BUDGET = 4096  # unpacked bytes per declared record when a chunk declares no size
MIN_YEAR, MAX_YEAR = 1970, 9000  # manifest times outside are refused


@dataclass(frozen=True)
class Chunk:
    name: str
    sha256: str
    records: int
    size: int | None = None  # bytes of the (gzip) file, if the manifest declares them
    ndjson_size: int | None = None  # bytes once unpacked, if declared

    @property
    def max_ndjson(self) -> int:
        """Unpacked bytes the reader accepts: the declared size, else a budget per record."""
        if self.ndjson_size is not None:
            return self.ndjson_size
        return max(self.records, 1) * RECORD_BUDGET + MAX_LINE

    @property
    def max_size(self) -> int:
        """File bytes the reader accepts: the declared size, else a cap that no honest
        gzip of ``max_ndjson`` bytes exceeds."""
        if self.size is not None:
            return self.size
        return min(MAX_CHUNK_BYTES, self.max_ndjson + (1 << 20))


@dataclass(frozen=True)
class ListInfo:
    """Which code list version this is: the signed manifest's header. A received
    :class:`Manifest` and the installed list (``store.CurrentList``) are both one."""

    program: str
    version: int
    base_version: int | None
    issued_at: datetime
    expires_at: datetime
    key_id: str
    code_salt: bytes
    rewards: dict

    @property
    def is_delta(self) -> bool:
        return self.base_version is not None


@dataclass(frozen=True)
class Manifest(ListInfo):
    """A verified manifest: the list's header plus its exact bytes and chunks."""

    raw: bytes
    chunks: tuple[Chunk, ...]
    clock_reset: bool = False  # HQ's signed recovery: set the clock floor to issued_at

    @property
    def record_count(self) -> int:
        return sum(c.records for c in self.chunks)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Record:
    op: str  # "put" or "revoke"
    code_hash: str
    reward_id: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int = 1
    stores: tuple[str, ...] | None = None
    uses: int = 0  # optional: uses HQ already knows of (kept across a salt rotation)


def _bad(message: Msg) -> BundleError:
    return BundleError("bad_manifest", Msg("manifest: {problem}", problem=message))


def _field(obj: Mapping, name: str, kind: type | tuple, *, optional: bool = False):
    if name not in obj:
        raise _bad(Msg("missing field {name}", name=repr(name)))
    value = obj[name]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(Msg("field {name} has the wrong type ({kind})", name=repr(name), kind=type(value).__name__))
    if kind is int and not 0 <= value <= MAX_INT:
        raise _bad(Msg("field {name} is out of range ({low} to {high})", name=repr(name), low=0, high="2**63-1"))
    return value


def _time(obj: Mapping, name: str) -> datetime:
    try:
        value = timefmt.parse(_field(obj, name, str))
    except (ValueError, OverflowError):
        raise _bad(Msg("field {name} is not an RFC 3339 time", name=repr(name))) from None
    if not MIN_YEAR <= value.year < MAX_YEAR:
        raise _bad(Msg("field {name} is out of range (years {low} to {high})", name=repr(name),
                       low=MIN_YEAR, high=MAX_YEAR - 1))
    return value


def _rewards(value: dict) -> dict:
    for reward_id, reward in value.items():
        if not isinstance(reward, dict) or reward.get("type") not in REWARD_TYPES:
            raise _bad(Msg("reward {reward} needs a type, one of {types}", reward=repr(reward_id),
                           types=", ".join(REWARD_TYPES)))
        title = reward.get("title")
        if (not isinstance(title, dict) or not title
                or not all(isinstance(text, str) for text in title.values())):
            raise _bad(Msg("reward {reward} needs a title {shape}", reward=repr(reward_id), shape="{lang: text}"))
    return value


def _chunks(value: list) -> tuple[Chunk, ...]:
    chunks = []
    for entry in value:
        if not isinstance(entry, dict):
            raise _bad(Msg("chunks must be objects"))
        name = _field(entry, "name", str)
        sha = _field(entry, "sha256", str).lower()
        records = _field(entry, "records", int)
        if not _CHUNK_NAME.match(name) or name in (MANIFEST, SIGNATURE):
            raise _bad(Msg("chunk name {name} is not a plain file name", name=repr(name)))
        if not _HEX64.match(sha):
            raise _bad(Msg("chunk {name} has a bad sha256", name=repr(name)))
        # sizes are optional: manifests signed before they existed get the global caps
        size, ndjson_size = (_field(entry, key, int) if key in entry else None
                             for key in ("size", "ndjson_size"))
        if size is not None and size > MAX_CHUNK_BYTES:
            raise _bad(Msg("chunk {name} is larger than {limit:,} bytes", name=repr(name), limit=MAX_CHUNK_BYTES))
        chunks.append(Chunk(name, sha, records, size, ndjson_size))
    return tuple(chunks)


def _json(raw: bytes):
    """Decode untrusted JSON bytes; any malformed input (also nesting too deep for the
    parser) is a ``bad_manifest``."""
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _bad(Msg("nested too deeply")) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(Msg("not UTF-8 JSON ({error})", error=exc)) from None


def parse_manifest(raw: bytes) -> Manifest:
    """Parse and validate manifest fields (the signature is checked separately)."""
    obj = _json(raw)
    if not isinstance(obj, dict):
        raise _bad(Msg("not a JSON object"))
    if obj.get("format") != FORMAT:
        raise BundleError("bad_format", Msg("manifest format is {have}, expected {want}",
                                                 have=repr(obj.get("format")), want=repr(FORMAT)))
    try:
        salt = base64.b64decode(_field(obj, "code_salt", str), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(Msg("code_salt is not base64")) from None
    version = _field(obj, "version", int)
    base = _field(obj, "base_version", int, optional=True)
    if version < 1 or (base is not None and base >= version):
        raise _bad(Msg("version must be positive and newer than base_version"))
    if "clock_reset" in obj and not isinstance(obj["clock_reset"], bool):
        raise _bad(Msg("field {name} must be true or false", name="'clock_reset'"))
    return Manifest(
        raw=raw,
        program=_field(obj, "program", str),
        version=version,
        base_version=base,
        issued_at=_time(obj, "issued_at"),
        expires_at=_time(obj, "expires_at"),
        key_id=_field(obj, "key_id", str),
        code_salt=salt,
        rewards=_rewards(_field(obj, "rewards", dict)),
        chunks=_chunks(_field(obj, "chunks", list)),
        clock_reset=obj.get("clock_reset", False),
    )


def verify_manifest(raw: bytes, signature: bytes, trusted: Mapping[str, Ed25519PublicKey]) -> Manifest:
    """Check the signature under the key the manifest names, then parse it."""
    obj = _json(raw)
    key_id = obj.get("key_id") if isinstance(obj, dict) else None
    key = trusted.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        known = ", ".join(sorted(trusted)) or Msg("none")
        raise BundleError("unknown_key", Msg("signed with key {key}, which this device does not trust (trusted: {known})",
                                             key=repr(key_id), known=known))
    if len(signature) != 64 or not keys.verify(key, signature, raw):
        raise BundleError("bad_signature", Msg("the signature of manifest.json does not verify under key {key}",
                                                   key=repr(key_id)))
    return parse_manifest(raw)


def _read_small(source: Source, name: str, limit: int) -> bytes:
    """Read a file that must be small, without trusting a stick's file to be so."""
    with source.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        reason = "bad_signature" if name == SIGNATURE else "bad_manifest"
        raise BundleError(reason, Msg("{name} is larger than {limit:,} bytes", name=name, limit=limit))
    return data


def read_manifest(source: Source, trusted: Mapping[str, Ed25519PublicKey]) -> Manifest:
    """The verified manifest of a bundle; its files are read with a size limit first."""
    return verify_manifest(_read_small(source, MANIFEST, MAX_MANIFEST),
                           _read_small(source, SIGNATURE, 64), trusted)


def _record(line: bytes, chunk: str, lineno: int) -> Record:
    try:
        obj = json.loads(line)
        op, code_hash = obj["op"], obj["code_hash"]
        if not isinstance(code_hash, str) or not _HEX64.match(code_hash):
            raise ValueError(Msg("code_hash must be 64 lowercase hex digits"))
        if op == "revoke":
            return Record("revoke", code_hash)
        if op != "put":
            raise ValueError(Msg("unknown op {op}", op=repr(op)))
        stores = obj.get("stores")
        max_uses = obj.get("max_uses", 1)
        if not isinstance(max_uses, int) or isinstance(max_uses, bool) or not 1 <= max_uses <= MAX_INT:
            raise ValueError(Msg("max_uses must be a positive integer below {limit}", limit="2**63"))
        if stores is not None and not (isinstance(stores, list) and all(isinstance(s, str) for s in stores)):
            raise ValueError(Msg("stores must be a list of strings or null"))
        uses = obj.get("uses", 0)
        if not isinstance(uses, int) or isinstance(uses, bool) or not 0 <= uses < 2**31:
            raise ValueError(Msg("uses must be a non-negative integer"))
        return Record(
            "put",
            code_hash,
            reward_id=str(obj["reward_id"]),
            valid_from=timefmt.parse_optional(obj.get("valid_from")),
            valid_until=timefmt.parse_optional(obj.get("valid_until")),
            max_uses=max_uses,
            stores=tuple(stores) if stores else None,
            uses=uses,
        )
    except RecursionError:
        raise BundleError("corrupt_chunk", Msg("chunk {name} line {line}: bad record ({error})", name=chunk,
                                               line=lineno, error=Msg("nested too deeply"))) from None
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise BundleError("corrupt_chunk", Msg("chunk {name} line {line}: bad record ({error})", name=chunk,
                                               line=lineno, error=exc)) from None


class _HashingReader:
    """Wraps a chunk file so everything read through it is hashed and counted; reading
    past the chunk's declared (or capped) size raises ``chunk_size`` at once."""

    def __init__(self, fh: IO[bytes], chunk: Chunk):
        self.fh, self.digest, self.chunk, self.count = fh, hashlib.sha256(), chunk, 0

    def read(self, size: int | None = -1) -> bytes:
        limit = self.chunk.max_size
        want = _READ if size is None or size < 0 else size
        data = self.fh.read(min(want, limit - self.count + 1))
        self.count += len(data)
        if self.count > limit:
            raise BundleError("chunk_size", Msg("chunk {name} is larger than the {limit:,} bytes its "
                                                "manifest allows (altered or damaged)",
                                                name=self.chunk.name, limit=limit))
        self.digest.update(data)
        return data

    def drain(self) -> str:
        """Hash whatever is left of the file; return the hex digest of all of it."""
        while self.read(_READ):
            pass
        return self.digest.hexdigest()


@contextmanager
def _chunk_stream(source: Source, chunk: Chunk) -> Iterator[_HashingReader]:
    """Open a chunk for hashing; a decoding error in a chunk whose bytes do not match
    the manifest is reported as ``chunk_hash`` (the bytes were altered or damaged)."""
    with source.open(chunk.name) as raw:
        hashing = _HashingReader(raw, chunk)
        try:
            yield hashing
        except BundleError as exc:
            if exc.reason == "corrupt_chunk" and hashing.drain() != chunk.sha256:
                raise BundleError("chunk_hash", Msg("chunk {name}: sha256 does not match the manifest (the "
                                                    "file was altered or damaged; {error})",
                                                    name=chunk.name, error=exc)) from None
            raise


def _blocks(hashing: _HashingReader, chunk: Chunk) -> Iterator[bytes]:
    """Decompressed data in large blocks that each end at a line end (the last may not).
    At most ``chunk.max_ndjson`` bytes are unpacked and no line may exceed MAX_LINE, so
    a gzip bomb costs one block of memory and stops at the declared size."""
    name, limit, unpacked = chunk.name, chunk.max_ndjson, 0
    try:
        with gzip.GzipFile(fileobj=hashing, mode="rb") as gz:
            tail = b""
            while data := gz.read(_BLOCK):
                unpacked += len(data)
                if unpacked > limit:
                    raise BundleError("chunk_size", Msg("chunk {name} unpacks to more than the {limit:,} bytes "
                                                        "its manifest allows (altered or damaged)",
                                                        name=name, limit=limit))
                data = tail + data
                cut = data.rfind(b"\n") + 1
                tail = data[cut:]
                if len(tail) > MAX_LINE:
                    raise BundleError("corrupt_chunk", Msg("chunk {name} has a line longer than {limit:,} bytes",
                                                           name=name, limit=MAX_LINE))
                if cut:
                    yield data[:cut]
            if tail:
                yield tail
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleError("corrupt_chunk", Msg("chunk {name} is truncated or not gzip ({error})",
                                               name=name, error=exc)) from None
    if chunk.ndjson_size is not None and unpacked != chunk.ndjson_size:
        raise BundleError("corrupt_chunk", Msg("chunk {name} unpacks to {size:,} bytes, its manifest "
                                               "says {want:,}", name=name, size=unpacked,
                                               want=chunk.ndjson_size))


def _over(chunk: Chunk, count: int) -> None:
    """Fail as soon as a chunk holds more records than its manifest declares."""
    if count > chunk.records:
        raise BundleError("corrupt_chunk", Msg("chunk {name}: more than the {want:,} records the "
                                               "manifest says", name=chunk.name, want=chunk.records))


def _finish(hashing: _HashingReader, chunk: Chunk, count: int) -> None:
    if hashing.drain() != chunk.sha256 or (chunk.size is not None and hashing.count != chunk.size):
        raise BundleError("chunk_hash", Msg("chunk {name}: sha256 does not match the manifest",
                                            name=chunk.name))
    if count != chunk.records:
        raise BundleError("corrupt_chunk", Msg("chunk {name}: {count} records, manifest says {want}",
                                               name=chunk.name, count=count, want=chunk.records))


def _lines(block: bytes, chunk: Chunk, first: int, rewards: Mapping) -> Iterator[Record]:
    """The general (slow, exact) parser: one record a line, blank lines skipped."""
    for lineno, line in enumerate(block.splitlines(), first):
        if not line.strip():
            continue
        record = _record(line, chunk.name, lineno)
        if record.op == "put" and record.reward_id not in rewards:
            raise BundleError("corrupt_chunk", Msg("chunk {name} line {line}: unknown reward_id {reward}",
                                                   name=chunk.name, line=lineno, reward=repr(record.reward_id)))
        yield record


def iter_chunk(source: Source, chunk: Chunk, rewards: Mapping) -> Iterator[Record]:
    """Stream one chunk's records; raise if it is truncated, corrupt or altered."""
    with _chunk_stream(source, chunk) as hashing:
        count, lineno = 0, 1
        for block in _blocks(hashing, chunk):
            for record in _lines(block, chunk, lineno, rewards):
                count += 1
                _over(chunk, count)
                yield record
            lineno += block.count(b"\n")
        _finish(hashing, chunk, count)


def iter_records(source: Source, manifest: Manifest) -> Iterator[Record]:
    """Every record of every chunk, each chunk's sha256 and count checked (HQ tools)."""
    for chunk in manifest.chunks:
        yield from iter_chunk(source, chunk, manifest.rewards)


# -- fast path for the importer ------------------------------------------------------
# A line exactly as ``kiosk-hq sign`` writes it is matched by one regular expression
# over a whole block (C speed); any other valid JSON falls back to the exact parser.
# Blocks come out in bundle order as ("cols", Columns) from the fast path, or as
# ("any", [(code_hash, reward_id, valid_from, valid_until, max_uses, stores, revoked)])
# from the exact parser.
_S = r'"[^"\\\n]*"'
_SIMPLE_PUT = re.compile(
    r'^\{"op":"put","code_hash":"([0-9a-f]{64})","reward_id":"([^"\\\n]*)",'
    r'"valid_from":null,"valid_until":null,"max_uses":1,"stores":null\}$', re.M)
_PUT = re.compile(
    r'^\{"op":"put","code_hash":"([0-9a-f]{64})","reward_id":"([^"\\\n]*)",'
    rf'"valid_from":(null|{_S}),"valid_until":(null|{_S}),"max_uses":([1-9][0-9]{{0,8}}),'
    rf'"stores":(null|\[(?:{_S}(?:,{_S})*)?\])\}}$', re.M)
_REVOKE = re.compile(r'^\{"op":"revoke","code_hash":"([0-9a-f]{64})"\}$', re.M)
_MIXED = re.compile(f"^(?:{_PUT.pattern[1:-1]}|{_REVOKE.pattern[1:-1]})$", re.M)  # deltas


class _NotCanonical(Exception):
    pass


def _epoch_of(text: str, cache: dict) -> int | None:
    if text == "null":
        return None
    if text not in cache:
        try:
            cache[text] = timefmt.to_epoch(timefmt.parse(text[1:-1]))
        except (ValueError, OverflowError):
            raise _NotCanonical from None
    return cache[text]


def _stores_of(text: str, cache: dict) -> str | None:
    if text == "null":
        return None
    if text not in cache:
        stores = json.loads(text)
        cache[text] = json.dumps(stores) if stores else None
    return cache[text]


@dataclass(frozen=True)
class Columns:
    """A block of records in columns, so SQLite can insert them without a Python call
    per row: ``hashes`` is the 32-byte code hashes back to back, ``attrs`` one byte per
    record indexing ``table``, the distinct (reward_id, valid_from, valid_until,
    max_uses, stores, revoked) tuples of the block (at most 256)."""

    hashes: bytes
    attrs: bytes
    table: tuple[tuple, ...]

    def __len__(self) -> int:
        return len(self.attrs)


_REVOKED = (None, None, None, 1, None, 1)


def _fast_block(block: bytes, rewards: Mapping, cache: dict) -> tuple[str, Columns] | None:
    """All lines of the block as columns, if every line is in canonical form."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.count("\n") + (not text.endswith("\n"))
    for regex in (_SIMPLE_PUT, _PUT, _REVOKE, _MIXED):
        found = regex.findall(text)
        if len(found) == lines:
            try:
                return "cols", _columns(regex, found, rewards, cache)
            except _NotCanonical:
                return None
    return None


def _columns(regex: re.Pattern, found: list, rewards: Mapping, cache: dict) -> Columns:
    if regex is _REVOKE:
        return Columns(bytes.fromhex("".join(found)), bytes(len(found)), (_REVOKED,))
    if regex is _SIMPLE_PUT:
        hexes, keys = [m[0] for m in found], [m[1] for m in found]
    elif regex is _PUT:
        hexes, keys = [m[0] for m in found], [m[1:] for m in found]
    else:  # put or revoke: the revoke's hash is group 7
        hexes = [m[0] or m[6] for m in found]
        keys = [m[1:6] if m[0] else None for m in found]
    index: dict = {}
    distinct = set(keys)
    if len(distinct) == 1:  # the usual case: one attribute set for the whole block
        index[distinct.pop()] = 0
        attrs = bytes(len(keys))
    elif len(distinct) > 256:  # cannot be indexed by one byte
        raise _NotCanonical
    else:
        attrs = bytes([index.setdefault(k, len(index)) for k in keys])
    return Columns(bytes.fromhex("".join(hexes)), attrs,
                   tuple(_attr(k, rewards, cache) for k in index))


def _attr(key, rewards: Mapping, cache: dict) -> tuple:
    if key is None:
        return _REVOKED
    if isinstance(key, str):
        key = (key, "null", "null", "1", "null")
    reward_id, vf, vu, mu, st = key
    if reward_id not in rewards:
        raise _NotCanonical  # the exact parser reports it with its line number
    return (reward_id, _epoch_of(vf, cache), _epoch_of(vu, cache), int(mu),
            _stores_of(st, cache), 0)


def _record_row(record: Record) -> tuple:
    h = bytes.fromhex(record.code_hash)
    if record.op == "revoke":
        return (h, None, None, None, 1, None, 1)
    return (h, record.reward_id, timefmt.to_epoch(record.valid_from),
            timefmt.to_epoch(record.valid_until), record.max_uses,
            json.dumps(list(record.stores)) if record.stores else None, 0, record.uses)


def _slow_block(block: bytes, chunk: Chunk, first: int, rewards: Mapping) -> list[tuple[str, list]]:
    rows = [_record_row(r) for r in _lines(block, chunk, first, rewards)]
    return [("any", rows)] if rows else []


def iter_chunk_rows(source: Source, chunk: Chunk, rewards: Mapping) -> Iterator[tuple[str, list]]:
    """Like :func:`iter_chunk`, but yields runs ``(shape, rows)`` ready for SQLite.

    Same checks (hash, record count, every record valid), about five times faster on
    the canonical line form, which is what a million-code import needs."""
    cache: dict = {}
    with _chunk_stream(source, chunk) as hashing:
        count, lineno = 0, 1
        for block in _blocks(hashing, chunk):
            fast = _fast_block(block, rewards, cache)
            runs = [fast] if fast else _slow_block(block, chunk, lineno, rewards)
            for shape, rows in runs:
                count += len(rows)
                _over(chunk, count)
                yield shape, rows
            lineno += block.count(b"\n")
        _finish(hashing, chunk, count)


def iter_rows(source: Source, manifest: Manifest) -> Iterator[tuple[str, list]]:
    """Every chunk as blocks of database rows, checked like :func:`iter_records` (importer)."""
    for chunk in manifest.chunks:
        yield from iter_chunk_rows(source, chunk, manifest.rewards)


def reward_title(reward: Mapping | None, lang: str, fallback: str = "en") -> str:
    """The reward's title in ``lang``, else English, else any language it has."""
    if not reward:
        return ""
    titles = reward.get("title") or {}
    return titles.get(lang) or titles.get(fallback) or next(iter(titles.values()), "")
