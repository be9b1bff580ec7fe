"""Signed code bundles end to end: ``kiosk-hq keygen/sign`` -> ``kiosk codes import``.

Interoperability with the openssl command line, every rejection reason (each
checking that the previous list still works), deltas, full snapshots, .tar bundles
and bad CSV input.
"""

import base64
import gzip
import json
import shutil
import stat
import subprocess
import tarfile

import pytest
from helpers import Hq, make_device, rehash_chunks, resign, write_csv

from kiosk.core import bundle_writer, codes, importer, keys
from kiosk.core.bundle import DirSource
from kiosk.core.store import Store
from kiosk.errors import BundleError

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command line not installed")


def openssl(*args, **kw):
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, **kw)


# -- keys and openssl -------------------------------------------------------------------

@needs_openssl
def test_keygen_files_are_private_and_readable_by_openssl(hq):
    assert stat.S_IMODE(hq.key.stat().st_mode) == 0o600
    priv = openssl("pkey", "-in", hq.key, "-noout", "-text")
    assert priv.returncode == 0, priv.stderr
    assert "ED25519" in priv.stdout.upper()
    pub = openssl("pkey", "-pubin", "-in", hq.pub, "-noout", "-text")
    assert pub.returncode == 0, pub.stderr
    derived = openssl("pkey", "-in", hq.key, "-pubout")
    assert derived.stdout.encode() == hq.pub.read_bytes()


def test_keygen_refuses_to_overwrite_a_key(hq):
    before = hq.key.read_bytes()
    run = hq.keygen()
    assert run.rc == 1 and "refusing to overwrite" in run.err
    assert hq.key.read_bytes() == before


@needs_openssl
def test_signature_of_kiosk_hq_sign_verifies_with_openssl(hq):
    out = hq.bundle(["AAAA-1111", "BBBB-2222"])
    ok = openssl("pkeyutl", "-verify", "-pubin", "-inkey", hq.pub, "-rawin",
                 "-in", out / "manifest.json", "-sigfile", out / "manifest.sig")
    assert ok.returncode == 0, ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    # and openssl says no to a manifest changed by one byte
    raw = (out / "manifest.json").read_bytes()
    (out / "manifest.json").write_bytes(raw.replace(b'"version": 1', b'"version": 9'))
    bad = openssl("pkeyutl", "-verify", "-pubin", "-inkey", hq.pub, "-rawin",
                  "-in", out / "manifest.json", "-sigfile", out / "manifest.sig")
    assert bad.returncode != 0


@needs_openssl
def test_bundle_signed_by_openssl_is_accepted(tmp_path):
    hq = Hq(tmp_path / "hq")
    (tmp_path / "hq" / "keys").mkdir(parents=True)
    assert openssl("genpkey", "-algorithm", "ed25519", "-out", hq.key).returncode == 0
    assert openssl("pkey", "-in", hq.key, "-pubout", "-out", hq.pub).returncode == 0
    out = hq.bundle(["OPEN-SSL1"])
    (out / "manifest.sig").unlink()
    signed = openssl("pkeyutl", "-sign", "-inkey", hq.key, "-rawin",
                     "-in", out / "manifest.json", "-out", out / "manifest.sig")
    assert signed.returncode == 0, signed.stderr
    assert len((out / "manifest.sig").read_bytes()) == 64
    dev = make_device(tmp_path / "dev", hq)
    run = dev.import_(out)
    assert run.rc == 0, run.err
    assert dev.verdict("OPEN-SSL1")["verdict"] == "ready"


# -- accepted bundles --------------------------------------------------------------------

def test_import_then_status(hq, device):
    out = hq.bundle(["AAAA-1111", "BBBB-2222", {"code": "CCCC-3333", "op": "revoke"}],
                    header=("code", "reward_id", "op"))
    run = device.import_(out)
    assert run.rc == 0, run.err
    assert "version 1" in run.out
    status = device.run("codes", "status", "--json").json()
    assert status["program"] == "demo" and status["version"] == 1
    assert status["codes"] == 2 and status["key_id"] == "hq1"
    assert status["issued_at"] < status["expires_at"]
    text = device.run("codes", "status")
    assert text.rc == 0 and "version   1" in text.out and "hq1" in text.out
    assert device.verdict("aaaa 1111")["verdict"] == "ready"
    assert device.verdict("CCCC-3333")["verdict"] == "revoked"


def test_the_installed_list_is_asked_of_the_store(hq, device):
    cfg = device.config()
    store = Store.in_dir(cfg.data_dir)
    try:
        assert store.current_list() is None
        manifest = importer.import_bundle(store, DirSource(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)),
                                          cfg.trusted_keys, cfg.program)
        have = store.current_list()
    finally:
        store.close()
    assert (have.program, have.version, have.code_count) == (cfg.program, 1, 2)
    assert (have.key_id, have.code_salt, have.rewards) == (manifest.key_id, manifest.code_salt,
                                                           manifest.rewards)
    assert have.manifest_sha256 == manifest.sha256 and have.snapshot_file


def test_status_without_a_list(device):
    run = device.run("codes", "status")
    assert run.rc == 0 and "no code list installed" in run.out
    assert device.run("codes", "status", "--json").json()["installed"] is False
    assert device.verdict("AAAA-1111")["verdict"] == "no_list"


def test_delta_put_and_revoke_on_its_exact_base(hq, device):
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222", "CCCC-3333"], 1)).rc == 0
    delta = hq.bundle([{"code": "DDDD-4444", "op": "put"},
                       {"code": "BBBB-2222", "op": "revoke"},
                       {"code": "CCCC-3333", "op": "put", "reward_id": "ten", "max_uses": "2"}],
                      2, base=1, header=("code", "reward_id", "max_uses", "op"))
    run = device.import_(delta)
    assert run.rc == 0, run.err
    assert "delta on 1" in run.out
    assert device.version() == 2
    assert device.run("codes", "status", "--json").json()["codes"] == 3
    assert device.verdict("DDDD-4444")["verdict"] == "ready"
    assert device.verdict("BBBB-2222")["verdict"] == "revoked"
    changed = device.verdict("CCCC-3333")
    assert changed["reward_id"] == "ten" and changed["detail"]["max_uses"] == 2
    assert device.verdict("AAAA-1111")["verdict"] == "ready"


def test_full_snapshot_replaces_the_list_and_keeps_use_counts(hq, device):
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)).rc == 0
    assert device.run("redeem", "AAAA-1111", "--confirm").rc == 0
    assert device.import_(hq.bundle(["AAAA-1111", "EEEE-5555"], 2)).rc == 0
    assert device.version() == 2
    assert device.verdict("BBBB-2222")["verdict"] == "unknown"
    assert device.verdict("EEEE-5555")["verdict"] == "ready"
    # same salt (kept in the HQ's salt file): the redemption still counts
    assert device.verdict("AAAA-1111")["verdict"] == "already_redeemed"


def test_salt_rotation_waits_while_redemptions_are_not_at_hq(hq, device, tmp_path):
    """A new salt changes every code hash: the device keeps the old list (and its use
    counts) while a local redemption has not reached HQ, and says so."""
    from sync.hq.db import HqDb

    first = hq.bundle(["AAAA-1111", "BBBB-2222"], 1)
    assert device.import_(first).rc == 0
    assert device.run("redeem", "AAAA-1111", "--confirm").rc == 0
    hq_db = tmp_path / "hq.sqlite"
    HqDb(hq_db).close()  # HQ has not heard of that redemption yet
    second = hq.bundle(["AAAA-1111", "BBBB-2222"], 2, extra=["--rotate-salt", "--uses-from", hq_db])
    salt = lambda b: json.loads((b / "manifest.json").read_bytes())["code_salt"]  # noqa: E731
    assert salt(first) != salt(second)
    run = device.import_(second)
    assert run.rc == 1 and "[salt_wait]" in run.err and "version 1 stays in use" in run.err
    assert device.version() == 1
    assert device.verdict("AAAA-1111")["verdict"] == "already_redeemed"
    status = device.run("codes", "status", "--json").json()
    assert status["salt_wait"]["version"] == 2 and status["salt_wait"]["pending"] == 1
    assert "version 2 (new code salt) is not used yet" in device.run("codes", "status").out


def test_rotate_salt_needs_the_hq_database(hq, tmp_path):
    hq.bundle(["AAAA-1111"], 1)
    csv_path = write_csv(hq.dir / "r.csv", [{"code": "AAAA-1111", "reward_id": "coffee"}])
    run = hq.sign(csv_path, tmp_path / "out", 2, "--rotate-salt")
    assert run.rc == 1 and "--uses-from" in run.err and not (tmp_path / "out").exists()


def test_import_from_tar(hq, device):
    tar = hq.bundle(["TARC-0001"], 1, tar=True)
    assert tar.suffix == ".tar" and tarfile.is_tarfile(tar)
    run = device.import_(tar)
    assert run.rc == 0, run.err
    assert device.verdict("TARC-0001")["verdict"] == "ready"


def test_delta_of_many_chunks_applies_in_order(hq, device, tmp_path):
    """A code put then revoked then put again in one delta ends up put (bundle order)."""
    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    salt = codes.code_hash  # alias for brevity below
    key = keys.load_private(hq.key)
    salt_bytes = __import__("base64").b64decode((hq.key.parent / "demo.salt").read_text())
    h = salt(salt_bytes, "ZZZZ-9999")
    records = [{"op": "put", "code_hash": h, "reward_id": "coffee", "valid_from": None,
                "valid_until": None, "max_uses": 1, "stores": None},
               {"op": "revoke", "code_hash": h},
               {"op": "put", "code_hash": h, "reward_id": "ten", "valid_from": None,
                "valid_until": None, "max_uses": 1, "stores": None},
               {"op": "revoke", "code_hash": salt(salt_bytes, "AAAA-1111")}]
    spec = bundle_writer.Spec("demo", 2, "hq1", salt_bytes, hq.rewards, base_version=1)
    out = bundle_writer.write(spec, records, key, tmp_path / "delta", per_chunk=1)
    assert len(list(out.glob("chunk-*"))) == 4
    assert device.import_(out).rc == 0
    v = device.verdict("ZZZZ-9999")
    assert v["verdict"] == "ready" and v["reward_id"] == "ten"
    assert device.verdict("AAAA-1111")["verdict"] == "revoked"


# -- rejections: each keeps the previous list -------------------------------------------

@pytest.fixture
def installed(hq, device):
    """Device with version 2 of the list installed (codes AAAA-1111, BBBB-2222)."""
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 2)).rc == 0
    return device


def assert_rejected(device, bundle_path, reason: str, words: str):
    run = device.import_(bundle_path)
    assert run.rc != 0
    assert f"[{reason}]" in run.err, run.err
    assert words in run.err, run.err
    assert "version 2 stays in use" in run.err
    # the previous list still works
    assert device.version() == 2
    assert device.verdict("AAAA-1111")["verdict"] == "ready"
    assert device.verdict("BBBB-2222")["verdict"] == "ready"
    assert device.verdict("NEWC-0001")["verdict"] == "unknown"
    assert device.run("codes", "status", "--json").json()["codes"] == 2


def test_reject_bad_signature(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3)
    raw = (out / "manifest.json").read_bytes()
    (out / "manifest.json").write_bytes(raw.replace(b'"version": 3', b'"version": 4'))
    assert_rejected(installed, out, "bad_signature", "does not verify under key 'hq1'")


def test_reject_signature_by_another_key_under_a_trusted_id(hq, installed, tmp_path):
    impostor = Hq(tmp_path / "impostor")
    assert impostor.keygen().rc == 0
    out = impostor.bundle(["NEWC-0001"], 3)
    assert_rejected(installed, out, "bad_signature", "does not verify")


def test_reject_unknown_key(installed, tmp_path):
    other = Hq(tmp_path / "other", key_id="hq-unknown")
    assert other.keygen().rc == 0
    out = other.bundle(["NEWC-0001"], 3)
    assert_rejected(installed, out, "unknown_key", "'hq-unknown', which this device does not trust")


def test_a_rejection_is_said_in_the_technicians_language(installed, tmp_path):
    other = Hq(tmp_path / "other", key_id="hq-unknown")
    assert other.keygen().rc == 0
    out = other.bundle(["NEWC-0001"], 3)
    run = installed.run("codes", "import", out, "--lang", "ru")
    assert run.rc != 0 and "[unknown_key]" in run.err and "'hq-unknown'" in run.err
    assert "не доверяет" in run.err and "используется версия 2" in run.err, run.err
    assert "which this device" not in run.err and "stays in use" not in run.err
    run = installed.run("codes", "import", tmp_path / "nowhere", "--lang", "kk")
    assert "[missing_file]" in run.err and "пакет жоқ" in run.err and "no bundle" not in run.err
    assert installed.version() == 2


def test_status_is_said_in_the_chosen_language(installed):
    run = installed.run("codes", "status", "--lang", "uz")
    assert run.rc == 0 and "versiya   2" in run.out and "kodlar    2" in run.out, run.out
    assert "version" not in run.out.split("\n")[1]


def test_csv_errors_are_said_in_every_language(hq):
    from kiosk.errors import CsvError
    from kiosk.i18n import say

    csv_path = write_csv(hq.dir / "bad.csv", [{"code": "GOOD-0001", "reward_id": "nope"}])
    with pytest.raises(CsvError) as caught:
        list(bundle_writer.records_from_csv(csv_path, b"s" * 32, {"coffee": {}}))
    assert str(caught.value) == "line 2: reward_id 'nope' is not in the rewards table"
    assert say(caught.value, "ru") == "строка 2: reward_id 'nope' нет в таблице наград"
    assert say(caught.value, "kk").startswith("2-жол: ") and "'nope'" in say(caught.value, "uz")


def test_reject_chunk_hash_mismatch(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3)
    chunk = next(out.glob("chunk-*"))
    data = gzip.decompress(chunk.read_bytes()).replace(b'"coffee"', b'"ten"')
    chunk.write_bytes(gzip.compress(data))  # still valid gzip NDJSON, but altered
    assert_rejected(installed, out, "chunk_hash", "sha256 does not match the manifest")


def test_reject_wrong_program(installed, tmp_path, hq):
    other = Hq(hq.dir, program="other-programme")
    out = other.bundle(["NEWC-0001"], 3)
    assert_rejected(installed, out, "wrong_program", "for program 'other-programme'")


@pytest.mark.parametrize("version", [1, 2])
def test_reject_older_or_equal_version(hq, installed, version):
    out = hq.bundle(["NEWC-0001"], version)
    assert_rejected(installed, out, "rollback", f"version {version} is not newer than")


def test_reject_delta_on_the_wrong_base(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3, base=1)
    assert_rejected(installed, out, "wrong_base", "applies on version 1, this device has 2")


def test_reject_truncated_chunk(hq, installed):
    out = hq.bundle(["NEWC-0001", "NEWC-0002", "NEWC-0003"], 3)
    chunk = next(out.glob("chunk-*"))
    chunk.write_bytes(chunk.read_bytes()[:-12])
    resign(out, hq.key, lambda m: rehash_chunks(m, out))  # signed, hashes match: still bad
    assert_rejected(installed, out, "corrupt_chunk", "truncated or not gzip")


def test_reject_truncated_chunk_unsigned_is_a_hash_mismatch(hq, installed):
    out = hq.bundle(["NEWC-0001", "NEWC-0002"], 3)
    chunk = next(out.glob("chunk-*"))
    chunk.write_bytes(chunk.read_bytes()[:20])
    assert_rejected(installed, out, "chunk_hash", "altered or damaged")


def test_reject_chunk_that_is_not_gzip(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3)
    chunk = next(out.glob("chunk-*"))
    chunk.write_bytes(gzip.decompress(chunk.read_bytes()))  # plain NDJSON
    resign(out, hq.key, lambda m: rehash_chunks(m, out))
    assert_rejected(installed, out, "corrupt_chunk", "truncated or not gzip")


def test_reject_bad_json_record_names_the_line(hq, installed):
    out = hq.bundle(["NEWC-0001", "NEWC-0002", "NEWC-0003"], 3)
    chunk = next(out.glob("chunk-*"))
    lines = gzip.decompress(chunk.read_bytes()).splitlines(keepends=True)
    lines[1] = b'{"op":"put","code_hash":"nothex",\n'
    chunk.write_bytes(gzip.compress(b"".join(lines)))
    resign(out, hq.key, lambda m: rehash_chunks(m, out))
    assert_rejected(installed, out, "corrupt_chunk", "line 2: bad record")


def test_reject_record_count_mismatch(hq, installed):
    out = hq.bundle(["NEWC-0001", "NEWC-0002"], 3)
    resign(out, hq.key, lambda m: m["chunks"][0].update(records=3))
    assert_rejected(installed, out, "corrupt_chunk", "2 records, manifest says 3")


def test_reject_bad_tar(installed, tmp_path):
    bad = tmp_path / "bundle.tar"
    bad.write_bytes(b"this is not a tar archive" * 40)
    assert_rejected(installed, bad, "bad_archive", "not a readable tar file")


@pytest.mark.parametrize("missing", ["manifest.sig", "manifest.json", "chunk-00000.ndjson.gz"])
def test_reject_missing_file(hq, installed, missing):
    out = hq.bundle(["NEWC-0001"], 3)
    (out / missing).unlink()
    assert_rejected(installed, out, "missing_file", f"bundle has no {missing}")


def test_reject_missing_path(installed, tmp_path):
    assert_rejected(installed, tmp_path / "nowhere", "missing_file", "no bundle at")


def test_reject_delta_with_a_bad_later_chunk_applies_nothing(hq, installed, tmp_path):
    """Records of good chunks before a bad one must not reach the list."""
    salt = __import__("base64").b64decode((hq.key.parent / "demo.salt").read_text())
    records = [{"op": "revoke", "code_hash": codes.code_hash(salt, "AAAA-1111")},
               {"op": "put", "code_hash": codes.code_hash(salt, "NEWC-0001"),
                "reward_id": "coffee", "valid_from": None, "valid_until": None,
                "max_uses": 1, "stores": None}]
    spec = bundle_writer.Spec("demo", 3, "hq1", salt, hq.rewards, base_version=2)
    out = bundle_writer.write(spec, records, keys.load_private(hq.key), tmp_path / "d", per_chunk=1)
    second = out / "chunk-00001.ndjson.gz"
    second.write_bytes(second.read_bytes()[:-5])
    resign(out, hq.key, lambda m: rehash_chunks(m, out))
    assert_rejected(installed, out, "corrupt_chunk", "chunk-00001")


def test_reject_expired_bundle(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3, extra=["--expires-days", "-1"])
    assert_rejected(installed, out, "bundle_expired", "bundle expired at")


# -- CSV input -----------------------------------------------------------------------------

@pytest.mark.parametrize("row, words", [
    ({"code": "GOOD-0002", "reward_id": "nope"}, "reward_id 'nope' is not in the rewards table"),
    ({"code": "GOOD-0002", "reward_id": "coffee", "max_uses": "0"}, "max_uses must be a positive"),
    ({"code": "GOOD-0002", "reward_id": "coffee", "max_uses": "²"}, "max_uses must be a positive"),
    ({"code": "GOOD-0002", "reward_id": "coffee", "valid_until": "31/12/2026"}, "valid_until"),
    ({"code": " - ", "reward_id": "coffee"}, "empty code"),
])
def test_csv_bad_row_reports_line_and_leaves_nothing(hq, row, words):
    csv_path = write_csv(hq.dir / "bad.csv", [{"code": "GOOD-0001", "reward_id": "coffee"}, row,
                                              {"code": "GOOD-0003", "reward_id": "coffee"}])
    out = hq.dir / "out"
    run = hq.sign(csv_path, out, 1, "--tar")
    assert run.rc == 1
    assert "line 3" in run.err and words in run.err and "nothing was written" in run.err
    assert not out.exists() and not out.with_name("out.tar").exists()
    assert [p.name for p in hq.dir.iterdir() if p.name.startswith(".out")] == []
    assert not (hq.key.parent / "demo.salt").exists()  # the first sign failed: no salt yet


def test_csv_without_code_column(hq):
    csv_path = hq.dir / "x.csv"
    csv_path.write_text("reward_id,max_uses\ncoffee,1\n")
    run = hq.sign(csv_path, hq.dir / "out", 1)
    assert run.rc == 1 and "line 1" in run.err and "code" in run.err


def test_sign_refuses_existing_output(hq):
    out = hq.bundle(["AAAA-1111"], 1)
    run = hq.sign(hq.dir / "codes-1.csv", out, 2)
    assert run.rc == 1 and "exists" in run.err


def test_delta_needs_the_salt_of_its_base(hq):
    csv_path = write_csv(hq.dir / "d.csv", [{"code": "AAAA-1111", "reward_id": "coffee"}])
    run = hq.sign(csv_path, hq.dir / "out", 2, "--base-version", "1")
    assert run.rc == 1 and "code_salt" in run.err


def test_import_after_a_crash_that_left_scratch_files(hq, device):
    """A power cut mid-import leaves files in the list folder: they never block later
    imports, are never read, and the next import removes them."""
    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    folder = device.config().data_dir / "kiosk.sqlite.lists"
    in_use = {p.name for p in folder.iterdir()}
    leftovers = ["v2-snap-dead0001.building", "v2-snap-dead0001.stage", "v2-snap-dead0002.sqlite"]
    for name in leftovers:
        (folder / name).write_bytes(b"half a file")
    assert device.verdict("AAAA-1111")["verdict"] == "ready"
    run = device.import_(hq.bundle(["BBBB-2222"], 2))
    assert run.rc == 0, run.err
    assert device.verdict("BBBB-2222")["verdict"] == "ready"
    names = {p.name for p in folder.iterdir()}
    assert not names & set(leftovers) and not names & in_use and len(names) == 1


def test_import_killed_midway_keeps_a_whole_list(hq, device, tmp_path):
    """SIGKILL during an import (a power cut): afterwards the device has the old list or
    the whole new one, never a mix, and the next import works."""
    import base64
    import signal
    import sys
    import time

    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    salt = base64.b64decode((hq.key.parent / "demo.salt").read_text())
    n = 60_000
    records = ({"op": "put", "code_hash": codes.code_hash(salt, f"BIG{i:07d}"),
                "reward_id": "coffee", "valid_from": None, "valid_until": None,
                "max_uses": 1, "stores": None} for i in range(n))
    spec = bundle_writer.Spec("demo", 2, "hq1", salt, hq.rewards)
    big = bundle_writer.write(spec, records, keys.load_private(hq.key), tmp_path / "big",
                              per_chunk=5_000)
    proc = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "--config", str(device.path),
                             "codes", "import", str(big)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    folder = device.config().data_dir / "kiosk.sqlite.lists"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # kill it once it stages
        if any(p.suffix == ".stage" for p in folder.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(60)
    status = device.run("codes", "status", "--json").json()
    if status["version"] == 1:
        assert status["codes"] == 1 and device.verdict("AAAA-1111")["verdict"] == "ready"
        assert device.verdict("BIG0000001")["verdict"] == "unknown"
        assert device.import_(big).rc == 0
    assert device.version() == 2
    assert device.run("codes", "status", "--json").json()["codes"] == n
    assert device.verdict("BIG0059999")["verdict"] == "ready"
    assert device.verdict("AAAA-1111")["verdict"] == "unknown"


def test_reject_oversized_manifest_and_signature(hq, installed):
    out = hq.bundle(["NEWC-0001"], 3)
    (out / "manifest.sig").write_bytes((out / "manifest.sig").read_bytes() + b"\n")
    assert_rejected(installed, out, "bad_signature", "manifest.sig is larger than 64 bytes")


def test_counter_keeps_confirming_while_a_list_imports(hq, device, tmp_path, monkeypatch):
    """Staging commits in batches: between them another process can record a redemption."""
    import base64

    from kiosk.core import bundle, importer

    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)).rc == 0
    salt = base64.b64decode((hq.key.parent / "demo.salt").read_text())
    records = [{"op": "put", "code_hash": codes.code_hash(salt, f"NEW{i:05d}"),
                "reward_id": "coffee", "valid_from": None, "valid_until": None,
                "max_uses": 1, "stores": None} for i in range(3000)]
    spec = bundle_writer.Spec("demo", 2, "hq1", salt, hq.rewards, base_version=1)
    delta = bundle_writer.write(spec, records, keys.load_private(hq.key), tmp_path / "d",
                                per_chunk=500)
    monkeypatch.setattr(importer, "BATCH", 500)
    importing, counter, seen = device.ledger(), device.ledger(), []

    def progress(done, total):
        seen.append(done)
        if len(seen) == 2:  # mid-import: the counter confirms on its own connection
            assert counter.confirm("AAAA-1111").verdict == "redeemed"

    importer.import_bundle(importing.store, bundle.DirSource(delta),
                           device.config().trusted_keys, "demo", progress=progress)
    assert seen == sorted(seen) and seen[-1] == 3000 and len(seen) >= 4
    assert counter.check("AAAA-1111").verdict == "already_redeemed"
    assert counter.check("NEW02999").verdict == "ready"


# -- An import re-checks the installed version inside its final transaction.
#
# ``import_bundle`` checks the bundle's version before it takes the import lock, then
# streams records for a while (minutes for a million codes). If another import (the
# CLI and the sync agent may start one at the same moment) takes the lock first and
# installs a newer list, the waiting import must refuse at its swap instead of
# replacing the newer list with an older one (a rollback) or merging a delta onto the
# wrong base. The race is made deterministic: the other import runs exactly between
# the first check and the lock (when ``import_bundle`` asks the store for its path).

class RaceAtLock:
    """Stands in for ``Store.path``: the first lock-file lookup runs ``racer`` first."""

    def __init__(self, path, racer):
        self.path, self.racer, self.name = path, racer, path.name

    def with_name(self, name):
        racer, self.racer = self.racer, None
        if racer:
            racer()
        return self.path.with_name(name)


def import_racing_a_newer_list(device, first, racer_bundle):
    """Import ``first`` while another import installs ``racer_bundle`` just before it."""
    cfg = device.config()
    nested = []

    def racer():
        other = Store.in_dir(cfg.data_dir)
        try:
            nested.append(importer.import_bundle(other, DirSource(racer_bundle),
                                                 cfg.trusted_keys, cfg.program))
        finally:
            other.close()

    store = Store.in_dir(cfg.data_dir)
    store.path = RaceAtLock(store.path, racer)
    try:
        with pytest.raises(BundleError) as err:
            importer.import_bundle(store, DirSource(first), cfg.trusted_keys, cfg.program)
    finally:
        store.close()
    assert nested and nested[0].version == 3
    return err.value


def test_newer_list_installed_during_staging_is_not_rolled_back(hq, device):
    assert device.import_(hq.bundle(["BASE-0001"], 1)).rc == 0
    older = hq.bundle(["OLD2-0001", "OLD2-0002"], 2)
    newer = hq.bundle(["NEW3-0001", "NEW3-0002", "NEW3-0003"], 3)
    assert import_racing_a_newer_list(device, older, newer).reason == "rollback"
    assert device.version() == 3
    assert device.verdict("NEW3-0003")["verdict"] == "ready"
    assert device.verdict("OLD2-0001")["verdict"] == "unknown"


def test_delta_whose_base_was_replaced_during_staging_is_not_applied(hq, device):
    assert device.import_(hq.bundle(["BASE-0001", "BASE-0002"], 1)).rc == 0
    delta = hq.bundle([{"code": "BASE-0002", "op": "revoke"}, {"code": "DLT2-0001", "op": "put"}],
                      2, base=1, header=("code", "reward_id", "op"))
    newer = hq.bundle(["BASE-0001", "BASE-0002", "NEW3-0001"], 3)
    assert import_racing_a_newer_list(device, delta, newer).reason in ("rollback", "wrong_base")
    assert device.version() == 3
    assert device.verdict("BASE-0002")["verdict"] == "ready"
    assert device.verdict("DLT2-0001")["verdict"] == "unknown"


def test_delta_with_another_code_salt_is_rejected(hq, device, tmp_path):
    assert device.import_(hq.bundle(["SALT-0001", "SALT-0002"], 1)).rc == 0
    other_salt = tmp_path / "other.salt"
    other_salt.write_text(base64.b64encode(b"another-salt-of-32-bytes-length!").decode())
    delta = hq.bundle([{"code": "SALT-0003", "op": "put"}], 2, base=1,
                      header=("code", "reward_id", "op"), extra=["--salt-file", other_salt])
    run = device.import_(delta)
    assert run.rc == 1
    assert "code_salt" in run.err + run.out
    # the base list stays, and its codes still hash the way they did
    assert device.version() == 1
    assert device.verdict("SALT-0002")["verdict"] == "ready"
    assert device.verdict("SALT-0003")["verdict"] == "unknown"


def test_an_empty_database_is_explained_in_the_technicians_language(device):
    """StoreError: the device's database file exists with 0 bytes (a bad copy)."""
    data = device.config().data_dir
    data.mkdir(parents=True, exist_ok=True)
    (data / "kiosk.sqlite").write_bytes(b"")
    run = device.run("codes", "status", "--lang", "ru")
    assert run.rc != 0 and "пуста (0 байт)" in run.err and "redemption history" not in run.err, run.err
    run = device.run("codes", "status", "--lang", "en")
    assert "is empty (0 bytes)" in run.err
    assert (data / "kiosk.sqlite").stat().st_size == 0  # nothing written over it
