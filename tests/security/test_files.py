"""Hostile files and clocks (issue 11, "Files and clocks"; docs/security.md).

Each attack runs the real ``kiosk`` command line against real files: bundles signed by
``kiosk-hq``, chunks replaced by gzip bombs, tars with a million entries or a 64 GiB
sparse member, a chunk linked to /dev/zero, a manifest that is a FIFO, signed lists
"issued" in 2099, a disk that fills up (RLIMIT_FSIZE in a child process). Memory-heavy
attacks run ``kiosk`` in a child process that reports its own peak RSS growth
(``/proc/self/status``: peak VmHWM against VmRSS before); the test asserts a bound on it, and prints the figures
(``pytest -s`` shows them). A hang fails the test after ``HANG_S`` seconds.
"""

import gzip
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import make_device, resign

from kiosk.core import bundle, bundle_writer, codes, importer, keys, timefmt
from kiosk.core.bundle_writer import Spec
from kiosk.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 30
RSS_BOUND_MB = 100
SALT = b"security-test-salt-32-bytes-long"
CODE, TIMED = "AAAA-1111", "TIME-2222"

# Runs `kiosk ARGV` in this child process and prints its own figures as a JSON line.
MEASURE = r"""
import json, sys, time
from kiosk import cli
cli.build_parser()  # every command module imported before the baseline
from kiosk.core import importer  # noqa: F401

def status_kb(field):  # VmRSS: resident now; VmHWM: peak resident so far
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))

base = status_kb("VmRSS")
start = time.monotonic()
rc = cli.main(sys.argv[1:])
peak = status_kb("VmHWM")
print(json.dumps({"rc": rc, "seconds": round(time.monotonic() - start, 3),
                  "rss_growth_mb": round(max(peak - base, 0) / 1024, 1),
                  "peak_rss_mb": round(peak / 1024, 1)}))
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def kiosk_child(device, *argv, script: str = MEASURE, pre: list | None = None,
                timeout: float = HANG_S) -> tuple[dict, str]:
    """Run ``kiosk --config DEVICE ARGV`` in a child; its figures and its stderr."""
    cmd = [sys.executable, "-c", script, *(pre or []), "--config", str(device.path), *map(str, argv)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"kiosk {' '.join(map(str, argv))}: still running after {timeout} s")
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return json.loads(lines[-1]), proc.stderr


def attack(device, name: str, path: Path, reason: str) -> dict:
    """Import ``path``: it must be refused for ``reason`` within the RSS bound, and the
    installed list (version 1) must stay."""
    fig, err = kiosk_child(device, "codes", "import", path)
    print(f"\n[files] {name}: rc {fig['rc']}, {fig['seconds']} s, "
          f"peak RSS {fig['peak_rss_mb']} MB (growth {fig['rss_growth_mb']} MB); {err.strip()}")
    assert fig["rc"] == 1, err
    assert f"[{reason}]" in err, err
    assert "version 1 stays in use" in err
    if reason == "chunk_hash":  # a chunk that fails to decode and does not match its hash
        assert "line longer than" in err or "gzip" in err
    assert len(err.strip().splitlines()) == 1, err
    assert fig["rss_growth_mb"] < RSS_BOUND_MB, fig
    assert device.version() == 1
    return fig


def records(codes_list, valid_until: datetime | None = None):
    for code in codes_list:
        until = timefmt.format(valid_until) if valid_until and code == TIMED else None
        yield {"op": "put", "code_hash": codes.code_hash(SALT, code), "reward_id": "coffee",
               "valid_from": None, "valid_until": until, "max_uses": 1, "stores": None}


def signed(hq, name: str, version: int, codes_list=(CODE, TIMED), **spec) -> Path:
    """A bundle signed with HQ's key; ``spec`` overrides Spec fields (issued_at ...)."""
    until = datetime.now(UTC) + timedelta(days=10)
    return bundle_writer.write(
        Spec(program=hq.program, version=version, key_id=hq.key_id, code_salt=SALT,
             rewards=hq.rewards, **spec),
        records(codes_list, until), keys.load_private(hq.key), hq.dir / name)


@pytest.fixture
def installed(device, hq):
    """The device with version 1 installed (2 codes, one valid for 10 more days)."""
    run = device.import_(signed(hq, "v1", 1))
    assert run.rc == 0, run.err
    return device


def copy_bundle(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def strip_sizes(manifest: dict) -> None:
    """A ``resign`` mutation: the manifest as an HQ from before the size fields wrote it."""
    for chunk in manifest["chunks"]:
        chunk.pop("size", None)
        chunk.pop("ndjson_size", None)


def gzip_of(path: Path, piece: bytes, count: int) -> Path:
    """``count`` gzip members of ``piece`` back to back (one gzip stream to a reader)."""
    path.write_bytes(gzip.compress(piece, compresslevel=9) * count)
    return path


# -- item 9: imports are bounded by what the signed manifest declares ------------------

def test_gzip_bomb_in_place_of_a_chunk_is_refused_at_its_declared_size(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "bomb")
    chunk = b / "chunk-00000.ndjson.gz"
    gzip_of(chunk, bytes(1 << 20), 256)  # 256 MiB of zeros in about 256 KB, no line end
    attack(installed, "256 MiB gzip bomb (declared sizes)", b, "chunk_size")


def test_gzip_bomb_under_a_manifest_without_sizes_hits_the_global_caps(installed, hq, tmp_path):
    """A manifest signed before the size fields existed (format v1 stays readable):
    the record count bounds the unpacked bytes."""
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "old"), hq.key, strip_sizes)
    assert "size" not in json.loads((b / "manifest.json").read_bytes())["chunks"][0]
    gzip_of(b / "chunk-00000.ndjson.gz", b"\n" * (1 << 20), 256)  # 256 MiB of blank lines
    attack(installed, "256 MiB blank-line bomb (v1 manifest)", b, "chunk_size")


def test_endless_line_is_refused_at_the_line_cap(installed, hq, tmp_path):
    """A v1 manifest that declares many records allows many unpacked bytes; one line
    without an end must still not grow a buffer beyond MAX_LINE."""
    def many(manifest):
        strip_sizes(manifest)
        manifest["chunks"][0]["records"] = 100_000
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "line"), hq.key, many)
    gzip_of(b / "chunk-00000.ndjson.gz", b"7" * (1 << 20), 256)
    attack(installed, "256 MiB single line (v1 manifest, 100,000 records)", b, "chunk_hash")


def test_a_valid_bundle_declares_its_chunk_sizes(hq, tmp_path):
    b = signed(hq, "sizes", 1)
    entry = json.loads((b / "manifest.json").read_bytes())["chunks"][0]
    data = (b / entry["name"]).read_bytes()
    assert entry["size"] == len(data) and entry["ndjson_size"] == len(gzip.decompress(data))


def test_more_records_than_declared_fail_before_the_end():
    line = json.dumps(next(records([CODE])), separators=(",", ":")).encode() + b"\n"
    source = _LinesSource(line * 10)
    sha = hashlib.sha256(source.blob).hexdigest()
    chunk = bundle.Chunk("c.ndjson.gz", sha, records=1)  # v1: no sizes declared
    seen = []
    with pytest.raises(bundle.BundleError, match="more than the 1 records") as err:
        for record in bundle.iter_chunk(source, chunk, {"coffee": {}}):
            seen.append(record)
    assert err.value.reason == "corrupt_chunk" and len(seen) == 1


class _LinesSource:
    """A source whose every file is ``data`` gzipped (for reader-level checks)."""

    def __init__(self, data: bytes):
        self.blob = gzip.compress(data)

    def open(self, name):
        return io.BytesIO(self.blob)


def _tar_gz_of_empty_entries(path: Path, count: int) -> Path:
    header = tarfile.TarInfo("x").tobuf(format=tarfile.GNU_FORMAT)
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container
    with open(path, "wb") as fh:
        step = 10_000
        for _ in range(count // step):
            fh.write(comp.compress(header * step))
        fh.write(comp.compress(bytes(1024)) + comp.flush())
    return path


def test_tar_with_a_million_entries_is_refused_before_indexing_them(installed, tmp_path):
    tar = _tar_gz_of_empty_entries(tmp_path / "million.tar.gz", 1_000_000)
    attack(installed, "tar.gz of 1,000,000 empty entries", tar, "bad_archive")


def test_sparse_tar_member_is_refused(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "sparse" / "bundle-v2")
    chunk = b / "chunk-00000.ndjson.gz"
    chunk.unlink()
    os.truncate(os.open(chunk, os.O_CREAT | os.O_WRONLY), 64 << 30)
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-C", tmp_path / "sparse", "-cf", tar, "bundle-v2"],
                   check=True, timeout=HANG_S)
    assert tar.stat().st_size < 1 << 20
    attack(installed, "tar with a 64 GiB sparse chunk", tar, "bad_archive")


@pytest.mark.parametrize("kind", ["symlink", "fifo", "hardlink"])
def test_tar_members_that_are_not_plain_files_are_refused(installed, hq, tmp_path, kind):
    b = signed(hq, "v2", 2)
    tar = tmp_path / f"{kind}.tar"
    with tarfile.open(tar, "w") as out:
        for f in sorted(b.iterdir()):
            if f.name != "chunk-00000.ndjson.gz":
                out.add(f, arcname=f"b/{f.name}")
        info = tarfile.TarInfo("b/chunk-00000.ndjson.gz")
        info.type = {"symlink": tarfile.SYMTYPE, "fifo": tarfile.FIFOTYPE,
                     "hardlink": tarfile.LNKTYPE}[kind]
        info.linkname = "/dev/zero" if kind != "hardlink" else "b/manifest.json"
        out.addfile(info)
    attack(installed, f"tar whose chunk is a {kind}", tar, "bad_archive")


def test_chunk_symlinked_to_dev_zero_fails_fast(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "zero")
    (b / "chunk-00000.ndjson.gz").unlink()
    (b / "chunk-00000.ndjson.gz").symlink_to("/dev/zero")
    attack(installed, "chunk symlinked to /dev/zero", b, "not_a_file")


def test_manifest_that_is_a_fifo_fails_fast(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "fifo")
    (b / "manifest.json").unlink()
    os.mkfifo(b / "manifest.json")
    attack(installed, "manifest.json is a FIFO", b, "not_a_file")


@pytest.mark.parametrize("name", ["manifest.json", "chunk-00000.ndjson.gz"])
def test_manifest_or_chunk_that_is_a_directory(installed, hq, tmp_path, name):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "dir")
    (b / name).unlink()
    (b / name).mkdir()
    attack(installed, f"{name} is a directory", b, "not_a_file")


def test_bundle_path_that_is_a_fifo(installed, tmp_path):
    os.mkfifo(tmp_path / "stick.tar")
    attack(installed, "bundle path is a FIFO", tmp_path / "stick.tar", "not_a_file")


# -- item 8: a list far in the future cannot move the clock floor ---------------------

def clock_toml(tmp_path, synced: bool) -> str:
    flag = tmp_path / "synchronized"
    if synced:
        flag.write_text("")
    return f'\n[clock]\nsynced_flag = "{flag}"\nrtc_device = ""\n'


def floor_of(device) -> str | None:
    store = Store.in_dir(device.config().data_dir)
    try:
        return store.get_meta("clock_floor")
    finally:
        store.close()


@pytest.mark.parametrize("synced", [True, False])
def test_list_issued_in_2099_is_refused_and_keeps_the_floor(hq, tmp_path, synced):
    dev = make_device(tmp_path / "dev", hq, extra=clock_toml(tmp_path, synced))
    assert dev.import_(signed(hq, "v1", 1)).rc == 0
    floor = floor_of(dev)
    future = signed(hq, "v2099", 2, issued_at=datetime(2099, 1, 1, tzinfo=UTC), expires_days=365)
    run = dev.import_(future)
    assert run.rc == 1 and "[issued_in_future]" in run.err and "version 1 stays" in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1
    assert floor_of(dev) == floor and dev.version() == 1
    assert dev.verdict(TIMED)["verdict"] == "ready"  # not "expired"
    # and the next honest list still installs
    assert dev.import_(signed(hq, "v3", 3)).rc == 0


def test_lead_is_small_when_the_clock_is_synced_and_a_week_when_not(hq, tmp_path):
    ahead = datetime.now(UTC) + timedelta(days=3)
    (tmp_path / "s").mkdir()
    synced = make_device(tmp_path / "s", hq, extra=clock_toml(tmp_path / "s", True))
    (tmp_path / "u").mkdir()
    unsynced = make_device(tmp_path / "u", hq, extra=clock_toml(tmp_path / "u", False))
    b = signed(hq, "ahead", 1, issued_at=ahead)
    assert "[issued_in_future]" in synced.import_(b).err
    run = unsynced.import_(b)  # a Pi switched off for 3 days boots 3 days in the past
    assert run.rc == 0, run.err
    assert floor_of(unsynced) == timefmt.format(ahead)
    near = signed(hq, "near", 1, issued_at=datetime.now(UTC) + timedelta(minutes=20))
    assert synced.import_(near).rc == 0  # HQ's clock a little ahead is fine


def test_signed_clock_reset_recovers_a_device_whose_floor_is_in_2099(hq, tmp_path):
    dev = make_device(tmp_path / "dev", hq, extra=clock_toml(tmp_path, True))
    assert dev.import_(signed(hq, "v1", 1)).rc == 0
    # a device that imported a 2099 list before the bound existed (no time check)
    cfg = dev.config()
    store = Store.in_dir(cfg.data_dir)
    importer.import_bundle(store, bundle.DirSource(signed(
        hq, "v2099", 2, issued_at=datetime(2099, 1, 1, tzinfo=UTC), expires_days=36500)),
        cfg.trusted_keys, cfg.program)
    store.close()
    assert floor_of(dev).startswith("2099") and dev.verdict(TIMED)["verdict"] == "expired"
    assert "[bundle_expired]" in dev.import_(signed(hq, "v3", 3)).err  # bricked
    status = dev.run("codes", "status")
    assert "clock floor 2099-01-01" in status.out
    # HQ's recovery: a list signed with --clock-reset (through the real CLI)
    csv_path = tmp_path / "codes.csv"
    csv_path.write_text(f"code,reward_id,valid_until\n{CODE},coffee,\n"
                        f"{TIMED},coffee,{timefmt.format(datetime.now(UTC) + timedelta(days=5))}\n")
    sign = hq.sign(csv_path, tmp_path / "reset", 4, "--clock-reset", "--salt-file",
                   _salt_file(tmp_path))
    assert sign.rc == 0, sign.err
    assert json.loads((tmp_path / "reset" / "manifest.json").read_bytes())["clock_reset"] is True
    run = dev.import_(tmp_path / "reset")
    assert run.rc == 0, run.err
    assert not floor_of(dev).startswith("2099")
    assert dev.verdict(TIMED)["verdict"] == "ready"
    assert dev.import_(signed(hq, "v5", 5)).rc == 0  # and later lists install again


def test_clock_reset_list_cannot_roll_back_nor_itself_lie_about_time(hq, installed, tmp_path):
    old = signed(hq, "old-reset", 1, clock_reset=True)
    assert "[rollback]" in installed.import_(old).err
    future = signed(hq, "future-reset", 2, clock_reset=True,
                    issued_at=datetime(2099, 1, 1, tzinfo=UTC), expires_days=365)
    assert "[issued_in_future]" in installed.import_(future).err


def _salt_file(tmp_path) -> Path:
    import base64
    path = tmp_path / "salt"
    path.write_text(base64.b64encode(SALT).decode())
    return path


# -- item 11: one clear line and exit 1/2, never a traceback --------------------------

PLAIN = r"""
import sys
from kiosk import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def kiosk_plain(device, *argv) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run([sys.executable, "-c", PLAIN, "--config", str(device.path),
                               *map(str, argv)], capture_output=True, text=True,
                              timeout=HANG_S, env=_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"kiosk {argv}: still running after {HANG_S} s")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 1, proc.stderr
    return proc


def test_deeply_nested_manifest(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "deep")
    (b / "manifest.json").write_bytes(b"[" * 200_000)
    proc = kiosk_plain(installed, "codes", "import", b)
    assert proc.returncode == 1 and "[bad_manifest]" in proc.stderr and "nested" in proc.stderr


def test_version_beyond_sqlite_integers(installed, hq, tmp_path):
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "big"), hq.key,
               lambda m: m.update(version=2**63))
    proc = kiosk_plain(installed, "codes", "import", b)
    assert proc.returncode == 1 and "[bad_manifest]" in proc.stderr, proc.stderr
    assert installed.version() == 1


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_year_one_issued_at(installed, hq, tmp_path, when):
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "y1"), hq.key,
               lambda m: m.update(issued_at=when))
    proc = kiosk_plain(installed, "codes", "import", b)
    assert proc.returncode == 1 and "[bad_manifest]" in proc.stderr, proc.stderr
    status = kiosk_plain(installed, "codes", "status")
    assert status.returncode == 0 and "version   1" in status.stdout


def test_reward_title_that_is_not_text(installed, hq, tmp_path):
    def nested_title(manifest):
        manifest["rewards"]["coffee"]["title"] = {"en": {"deep": [1, 2]}}
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "title"), hq.key, nested_title)
    proc = kiosk_plain(installed, "codes", "import", b)
    assert proc.returncode == 1 and "[bad_manifest]" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300"])
def test_void_window_that_is_not_a_sane_number(hq, tmp_path, value):
    dev = make_device(tmp_path / "d", hq, extra=f"[redeem]\nvoid_window_minutes = {value}\n")
    proc = kiosk_plain(dev, "codes", "status")
    assert proc.returncode == 2 and "void_window_minutes" in proc.stderr, proc.stderr


def test_trust_key_path_that_is_a_directory(hq, tmp_path):
    (tmp_path / "keydir").mkdir()
    dev = make_device(tmp_path / "d", hq)
    dev.path.write_text(dev.path.read_text().replace(str(hq.pub), str(tmp_path / "keydir")))
    proc = kiosk_plain(dev, "codes", "status")
    assert proc.returncode == 2 and "[trust.keys] hq1" in proc.stderr, proc.stderr


def test_zero_length_database_is_reported_not_replaced(hq, tmp_path):
    dev = make_device(tmp_path / "d", hq)
    db = dev.config().data_dir / "kiosk.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    for argv in (("codes", "status"), ("redeem", CODE)):
        proc = kiosk_plain(dev, *argv)
        assert proc.returncode == 1 and "empty (0 bytes)" in proc.stderr, proc.stderr
    assert db.stat().st_size == 0


# Disk full: the child may not grow any file past LIMIT (SIGXFSZ ignored, so a write
# fails with EFBIG, which SQLite reports as a full disk or an I/O error).
FULL = r"""
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from kiosk import cli
config, argvs = sys.argv[2], json.loads(sys.argv[3])
print(json.dumps([cli.main(["--config", config, *argv]) for argv in argvs]))
"""


def _checkpointed(device) -> int:
    """Fold the WAL into the database file; the largest file in the data folder."""
    data = device.config().data_dir
    conn = sqlite3.connect(data / "kiosk.sqlite")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return max(f.stat().st_size for f in data.iterdir())


def _full_disk_run(device, argvs: list, room: int) -> tuple[list, str]:
    limit = _checkpointed(device) + room
    proc = subprocess.run([sys.executable, "-c", FULL, str(limit), str(device.path),
                           json.dumps(argvs)], capture_output=True, text=True,
                          timeout=HANG_S * 2, env=_env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_disk_full_during_confirms(hq, tmp_path):
    many = [f"FULL-{i:04d}" for i in range(40)]
    dev = make_device(tmp_path / "d", hq)
    assert dev.import_(signed(hq, "v1", 1, codes_list=many)).rc == 0
    rcs, err = _full_disk_run(dev, [["redeem", c, "--confirm"] for c in many], 8192)
    print(f"\n[files] disk full during confirms: exit codes {rcs}; "
          f"{err.strip().splitlines()[0] if err.strip() else ''}")
    assert 1 in rcs, (rcs, err)
    assert "database" in err and len(err.strip().splitlines()) == rcs.count(1), err
    done = [c for c, rc in zip(many, rcs, strict=True) if rc == 0]
    for code in many:  # exactly the confirmed ones are recorded, nothing half-written
        want = "already_redeemed" if code in done else "ready"
        assert dev.verdict(code)["verdict"] == want, code


def test_disk_full_during_import_keeps_the_list(installed, hq, tmp_path):
    big = signed(hq, "v2", 2, codes_list=[f"BULK-{i:06d}" for i in range(30_000)])
    rcs, err = _full_disk_run(installed, [["codes", "import", str(big)]], 64 << 10)
    print(f"\n[files] disk full during import: exit codes {rcs}; {err.strip()}")
    assert rcs == [1] and "[import_failed]" in err and "version 1 stays in use" in err, err
    assert len(err.strip().splitlines()) == 1
    assert installed.version() == 1 and installed.verdict(CODE)["verdict"] == "ready"
    assert installed.import_(big).rc == 0  # with room again it installs


# -- attacks that already held: tampering, rollback, path traversal -------------------

def test_tampered_chunk_byte_is_refused(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "t")
    chunk = b / "chunk-00000.ndjson.gz"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    attack(installed, "one chunk byte flipped", b, "chunk_hash")


def test_manifest_edited_after_signing_is_refused(installed, hq, tmp_path):
    b = copy_bundle(signed(hq, "v2", 2), tmp_path / "m")
    raw = (b / "manifest.json").read_bytes()
    (b / "manifest.json").write_bytes(raw.replace(b'"version": 2', b'"version": 9'))
    attack(installed, "manifest edited after signing", b, "bad_signature")


def test_rollback_to_an_older_signed_list_is_refused(installed, hq, tmp_path):
    assert installed.import_(signed(hq, "v5", 5)).rc == 0
    run = installed.import_(signed(hq, "v4", 4))
    assert run.rc == 1 and "[rollback]" in run.err and installed.version() == 5


def test_chunk_name_with_a_path_is_refused(installed, hq, tmp_path):
    b = resign(copy_bundle(signed(hq, "v2", 2), tmp_path / "p"), hq.key,
               lambda m: m["chunks"][0].update(name="../../etc/passwd"))
    attack(installed, "chunk name ../../etc/passwd", b, "bad_manifest")


def test_tar_member_names_with_dot_dot_are_never_extracted(installed, hq, tmp_path):
    b = signed(hq, "v2", 2)
    victim = tmp_path / "victim"
    tar = tmp_path / "traversal.tar"
    with tarfile.open(tar, "w") as out:
        for f in sorted(b.iterdir()):
            out.add(f, arcname=f"../../{f.name}")
        info = tarfile.TarInfo(f"../../../../{victim}")
        out.addfile(info)
    run = installed.import_(tar)
    assert run.rc == 0, run.err  # members are read in place by base name
    assert not victim.exists() and installed.version() == 2
