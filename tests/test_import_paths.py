"""The importer's fast path (canonical lines matched by regular expressions) must give
exactly the same code list as the exact JSON parser used for any other line form."""

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.core import bundle, bundle_writer, codelist, importer, timefmt
from kiosk.core.store import Store

SALT = b"k" * 32
REWARDS = {"coffee": {"type": "item", "value": 1, "title": {"en": "Coffee"}},
           "ten": {"type": "percent", "value": 10, "title": {"en": "10%"}}}
KEY = Ed25519PrivateKey.generate()
TRUSTED = {"hq1": KEY.public_key()}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = ("op", "code_hash", "reward_id", "valid_from", "valid_until", "max_uses", "stores")

hash_st = st.sampled_from([hashlib.sha256(bytes([i])).hexdigest() for i in range(12)])
time_st = st.one_of(st.none(), st.integers(0, 10**6).map(
    lambda s: timefmt.format(T0 + timedelta(seconds=s))))
put_st = st.fixed_dictionaries({
    "op": st.just("put"), "code_hash": hash_st, "reward_id": st.sampled_from(sorted(REWARDS)),
    "valid_from": time_st, "valid_until": time_st, "max_uses": st.integers(1, 5),
    "stores": st.one_of(st.none(), st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=1,
                                             max_size=3))})
revoke_st = st.fixed_dictionaries({"op": st.just("revoke"), "code_hash": hash_st})
records_st = st.lists(st.one_of(put_st, put_st, revoke_st), min_size=1, max_size=40)


def write_bundle(path, records, version, base, canonical, per_chunk=7):
    spec = bundle_writer.Spec("p", version, "hq1", SALT, REWARDS, base_version=base)
    if canonical:  # keys in the order kiosk-hq writes them
        records = [{k: r[k] for k in ORDER if k in r} for r in records]
        return bundle_writer.write(spec, records, KEY, path, per_chunk=per_chunk)
    path.mkdir()
    lines = "".join(json.dumps(r, sort_keys=True, indent=None) + "\n\n" for r in records)
    name = "chunk-00000.ndjson.gz"
    (path / name).write_bytes(gzip.compress(lines.encode()))
    chunks = [{"name": name, "sha256": hashlib.sha256((path / name).read_bytes()).hexdigest(),
               "records": len(records)}]
    raw = bundle_writer.manifest_bytes(spec, chunks)
    (path / "manifest.json").write_bytes(raw)
    (path / "manifest.sig").write_bytes(KEY.sign(raw))
    return path


def table(store):
    """Every stored code with its attributes (overlay over snapshot), and the count."""
    have = store.current_list()
    view = codelist.open_view(store.path, store.conn, have.snapshot_file, have.overlay_file)
    keys_ = set()
    for conn in view.conns:
        keys_ |= {r[0] for r in conn.execute("SELECT h FROM codes")}
    rows = [(k, *view.find(k)) for k in sorted(keys_)]
    view.close()
    return rows, have.code_count


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(full=records_st, delta=records_st)
def test_fast_and_exact_paths_agree(tmp_path_factory, full, delta):
    tmp = tmp_path_factory.mktemp("paths")
    results = []
    for canonical in (True, False):
        store = Store(tmp / f"db-{canonical}.sqlite")
        for version, base, records in ((1, None, full), (2, 1, delta)):
            b = write_bundle(tmp / f"b{version}-{canonical}", records, version, base, canonical)
            importer.import_bundle(store, bundle.DirSource(b), TRUSTED, "p")
            results.append(table(store))
        store.close()
    assert results[0] == results[2] and results[1] == results[3]
    for b in tmp.glob("b*-True"):  # the canonical bundles really took the fast path
        for chunk in b.glob("chunk-*"):
            assert bundle._fast_block(gzip.decompress(chunk.read_bytes()), REWARDS, {})
    # and both agree with the record-by-record reader other tools use
    last = {}
    for r in full + delta:
        if r["op"] == "put":
            last[r["code_hash"]] = False
        else:
            last[r["code_hash"]] = True
    assert results[3][1] == sum(1 for revoked in last.values() if not revoked)


def test_block_with_many_distinct_attributes_falls_back_to_the_exact_parser(tmp_path):
    """More than 256 attribute sets in one block cannot be indexed by a byte."""
    records = [{"op": "put", "code_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                "reward_id": "coffee", "valid_from": None,
                "valid_until": timefmt.format(T0 + timedelta(days=i)), "max_uses": 1,
                "stores": None} for i in range(300)]
    out = write_bundle(tmp_path / "b", records, 1, None, True, per_chunk=1000)
    chunk = gzip.decompress(next(out.glob("chunk-*")).read_bytes())
    assert bundle._fast_block(chunk, REWARDS, {}) is None
    store = Store(tmp_path / "db.sqlite")
    importer.import_bundle(store, bundle.DirSource(out), TRUSTED, "p")
    rows, count = table(store)
    assert count == 300
    assert sorted(timefmt.to_epoch(r[1].valid_until) for r in rows) == [timefmt.to_epoch(T0 + timedelta(days=i)) for i in range(300)]
