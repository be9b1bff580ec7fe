"""Fuzzing the parsers of untrusted input (issue 11): QR payloads, bundle manifests,
chunk files, bundle .tar archives and the device config file.

Each target feeds hypothesis-generated input to the real parser and allows exactly
one outcome besides success: the parser's own error (``BundleError``, ``ConfigError``;
``payload.parse`` never raises at all). Anything else (a ``RecursionError``, an
``OverflowError``, a ``KeyError``...) is a crash and fails the test with the
shrunk input. Manifests are signed with a test key, so the fuzzer reaches the field
checks behind the signature, and chunk files are given their true sha256, so it
reaches the record parsers behind the hash check.

``FUZZ_EXAMPLES`` sets the inputs per target: a short bounded pass by default (the
normal test run), many more under ``make fuzz``. Each target prints
``[fuzz] TARGET: N inputs, 0 crashes`` (shown with ``pytest -s``).
"""

import base64
import gzip
import hashlib
import io
import json
import math
import os
import re
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk import config
from kiosk.core import bundle, codes, keys, payload
from kiosk.errors import BundleError, ConfigError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
KEY = Ed25519PrivateKey.generate()
TRUSTED = {"hq1": KEY.public_key()}
WORK = Path(tempfile.mkdtemp(prefix="kiosk-fuzz-"))


class Tally:
    """Counts the inputs one target tried, and reports them."""

    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1

    def report(self, name: str) -> None:
        print(f"\n[fuzz] {name}: {self.n} inputs, 0 crashes")
        assert self.n >= min(EXAMPLES, 10)


# -- JSON values, small but with every kind and some nesting ------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=30),
                    st.sampled_from(["", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
                                     "2026-11-22T19:09:45.123Z", "2099-01-01T00:00:00Z",
                                     "not a time", "a" * 64, "../x", "chunk-00000.ndjson.gz"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- payloads ---------------------------------------------------------------------
PATTERNS = [None, re.compile(r"LOYAL:(?P<code>[A-Z0-9-]+)"), re.compile(r"(?P<code>.*)")]
payload_inputs = st.one_of(
    st.text(max_size=3000), st.binary(max_size=3000),
    st.builds(lambda host, path, code: f"https://{host}/{path}?code={code}",
              st.text(max_size=40), st.text(max_size=40), st.text(max_size=80)),
    st.builds(lambda s: "LOYAL:" + s, st.text(max_size=100)))


def test_fuzz_payload_parse():
    tally = Tally()

    @FUZZ
    @given(payload_inputs, st.sampled_from(PATTERNS))
    def target(data, pattern):
        tally()
        result = payload.parse(data, pattern)
        if result.code is not None:
            assert re.fullmatch(r"[A-Z0-9]{4,64}", result.code), result
            assert codes.normalise(result.code) == result.code
        assert len(result.raw) <= payload.MAX_PAYLOAD

    target()
    tally.report("payload.parse")


# -- manifests ----------------------------------------------------------------------
def valid_manifest() -> dict:
    return {"format": bundle.FORMAT, "program": "demo", "version": 2, "base_version": None,
            "issued_at": "2026-11-22T19:09:45.123Z", "expires_at": "2026-12-22T19:09:45.123Z",
            "key_id": "hq1", "code_salt": base64.b64encode(b"s" * 32).decode(),
            "rewards": {"coffee": {"type": "item", "value": 1, "title": {"en": "Coffee"}}},
            "chunks": [{"name": "chunk-00000.ndjson.gz", "sha256": "a" * 64, "records": 1,
                        "size": 10, "ndjson_size": 10}]}


def mutate(base: dict, edits: list) -> dict:
    """Apply (path, value) edits: replace a field, a chunk field, or delete one."""
    out = json.loads(json.dumps(base))
    for where, key, value in edits:
        target = out if where == "top" else (out["chunks"][0] if isinstance(out.get("chunks"), list)
                                             and out["chunks"] and isinstance(out["chunks"][0], dict)
                                             else out)
        if value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = value
    return out


TOP_KEYS = list(valid_manifest()) + ["clock_reset", "extra"]
CHUNK_KEYS = ["name", "sha256", "records", "size", "ndjson_size"]
edits_st = st.lists(st.one_of(
    st.tuples(st.just("top"), st.sampled_from(TOP_KEYS), st.one_of(json_values, st.just("<delete>"))),
    st.tuples(st.just("chunk"), st.sampled_from(CHUNK_KEYS), st.one_of(json_values, st.just("<delete>")))),
    max_size=4)
manifest_bytes = st.one_of(
    st.binary(max_size=500),
    st.builds(lambda e: json.dumps(mutate(valid_manifest(), e)).encode(), edits_st),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda d: deep(d).encode(), st.integers(1, 200_000)),
    st.builds(lambda d: ('{"key_id": "hq1", "x": ' + deep(d) + "}").encode(), st.integers(1, 100_000)))


def test_fuzz_manifest_parser():
    tally = Tally()

    @FUZZ
    @given(manifest_bytes)
    def target(raw):
        tally()
        try:
            manifest = bundle.verify_manifest(raw, KEY.sign(raw), TRUSTED)
        except BundleError:
            return
        for chunk in manifest.chunks:  # what the reader then relies on
            assert chunk.max_size >= 0 and chunk.max_ndjson >= 0
        assert 1 <= manifest.version < 2**63

    target()
    tally.report("bundle manifest (signed)")


# -- chunk files --------------------------------------------------------------------
H = "0123456789abcdef" * 4
canonical = [
    '{"op":"put","code_hash":"HASH","reward_id":"coffee","valid_from":null,"valid_until":null,"max_uses":1,"stores":null}'.replace("HASH", H),
    '{"op":"put","code_hash":"HASH","reward_id":"coffee","valid_from":"2026-01-01T00:00:00Z","valid_until":null,"max_uses":3,"stores":["s1"]}'.replace("HASH", H),
    '{"op":"revoke","code_hash":"HASH"}'.replace("HASH", H),
]


def tweak(line: str, pos: int, text: str) -> str:
    pos %= len(line) + 1
    return line[:pos] + text + line[pos:]


line_st = st.one_of(
    st.sampled_from(canonical),
    st.builds(tweak, st.sampled_from(canonical), st.integers(0, 200),
              st.sampled_from(['"', "\\", "0", "-", "null", "9" * 25, "\n", "", " ", "[", "{}",
                               "0001-01-01T00:00:00+01:00", "\u0000", "é"])),
    st.builds(lambda v: json.dumps(v), json_values),
    st.builds(lambda rec: json.dumps(rec), st.fixed_dictionaries(
        {"op": st.sampled_from(["put", "revoke", "x"]), "code_hash": st.sampled_from([H, "ab", 1]),
         "reward_id": st.one_of(st.sampled_from(["coffee", "nope"]), json_values),
         "valid_from": st.one_of(st.none(), scalars), "valid_until": st.one_of(st.none(), scalars),
         "max_uses": st.one_of(st.integers(-2, 2**64), scalars),
         "stores": st.one_of(st.none(), json_values)})),
    st.builds(deep, st.integers(1, 50_000)),
)
chunk_st = st.tuples(
    st.one_of(st.builds(lambda lines: ("\n".join(lines)).encode(), st.lists(line_st, max_size=8)),
              st.binary(max_size=300)),
    st.booleans(),  # gzip it (else raw bytes, mostly not gzip)
    st.integers(0, 10),  # records declared
    st.sampled_from(["exact", "none", "small"]))  # sizes declared


class _Blob:
    def __init__(self, data: bytes):
        self.data = data

    def open(self, name):
        return io.BytesIO(self.data)


def _drain(iterator) -> tuple[str, object]:
    try:
        return "ok", list(iterator)
    except BundleError as exc:
        return "refused", exc.reason


def test_fuzz_chunk_reader():
    tally = Tally()
    rewards = {"coffee": {"type": "item", "title": {"en": "Coffee"}}}

    @FUZZ
    @given(chunk_st)
    def target(case):
        tally()
        text, packed, records, sizes = case
        data = gzip.compress(text) if packed else text
        size, ndjson = {"exact": (len(data), len(text) if packed else None), "none": (None, None),
                        "small": (max(len(data) // 2, 0), max(len(text) // 2, 0))}[sizes]
        chunk = bundle.Chunk("c.ndjson.gz", hashlib.sha256(data).hexdigest(), records, size, ndjson)
        slow = _drain(bundle.iter_chunk(_Blob(data), chunk, rewards))
        fast = _drain(bundle.iter_chunk_rows(_Blob(data), chunk, rewards))
        assert slow[0] == fast[0], (slow, fast)  # both readers accept the same chunks
        if slow[0] == "ok":
            assert len(slow[1]) == records

    target()
    tally.report("bundle chunk reader (exact and fast paths)")


# -- tar archives -------------------------------------------------------------------
def tar_bytes(members: list) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = "/dev/zero"
                tar.addfile(info)
    return out.getvalue()


member_st = st.tuples(
    st.one_of(st.sampled_from(["b/manifest.json", "b/manifest.sig", "b/chunk-00000.ndjson.gz",
                               "../../x", "/abs", "b/"]), st.text(min_size=1, max_size=20)),
    st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                     tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]),
    st.binary(max_size=200))
tar_st = st.one_of(
    st.builds(tar_bytes, st.lists(member_st, max_size=5)),
    st.builds(lambda t, cut, junk: t[:cut] + junk,
              st.builds(tar_bytes, st.lists(member_st, min_size=1, max_size=3)),
              st.integers(0, 3000), st.binary(max_size=600)),
    st.binary(max_size=1500))


def test_fuzz_tar_bundle_reader():
    tally = Tally()
    path = WORK / "bundle.tar"

    @FUZZ
    @given(tar_st, st.booleans())
    def target(data, packed):
        tally()
        path.write_bytes(gzip.compress(data) if packed else data)
        try:
            source = bundle.open_source(path)
        except BundleError:
            return
        try:
            bundle.read_manifest(source, TRUSTED)
        except BundleError:
            pass
        finally:
            source.close()

    target()
    tally.report("bundle .tar reader")


# -- config files -------------------------------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)  # a TOML basic string is a JSON string


toml_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
                         st.text(max_size=20),
                         st.sampled_from(["hq.pem", "/", "/dev/null", "~nouser/x", ".", "", "(?P<code>",
                                          "(?P<code>[A-Z]+)", "en", "kiosk-1"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)),
    max_leaves=6)
SECTION_KEYS = {"device": ["id", "store", "program", "data_dir", "language", "business_name"],
                "redeem": ["void_window_minutes", "pattern"], "trust.keys": ["hq1", "k2"],
                "trust": ["keys"], "clock": ["synced_flag"], "camera": ["fps"], "zzz": ["a"]}
config_st = st.one_of(
    st.dictionaries(st.sampled_from(list(SECTION_KEYS)),
                    st.lists(st.tuples(st.sampled_from(sum(SECTION_KEYS.values(), [])), toml_values),
                             max_size=6), max_size=5),
    st.text(max_size=400),
    st.builds(lambda d: "x = " + deep(d), st.integers(1, 50_000)))


def render(doc) -> str:
    if isinstance(doc, str):
        return doc
    good = {"device": [("id", "kiosk-1"), ("store", "s1"), ("program", "demo"), ("data_dir", "data")],
            "trust.keys": [("hq1", str(WORK / "hq.pub.pem"))]}
    lines = []
    for section in sorted(set(doc) | set(good)):
        lines.append(f"[{section}]")
        seen = set()
        for key, value in [*doc.get(section, []), *good.get(section, [])]:
            if key not in seen:
                seen.add(key)
                lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def test_fuzz_config_loader():
    tally = Tally()
    (WORK / "hq.pub.pem").write_bytes(keys.public_pem(KEY.public_key()))
    path = WORK / "kiosk.toml"

    @FUZZ
    @given(config_st)
    def target(doc):
        tally()
        path.write_text(render(doc), encoding="utf-8", errors="surrogatepass")
        try:
            cfg = config.load(path)
        except ConfigError:
            return
        assert cfg.void_window.total_seconds() >= 0

    target()
    tally.report("config loader")
