"""An importer killed at any step leaves the device answering from a whole list.

``kiosk codes import`` runs in a child process that dies with ``os._exit`` (no clean-up,
no finally blocks: what kill -9 or a power cut leaves) at a chosen step of the import:
while staging, while sorting, after the new file was renamed into place but before
the switch, and after the switch but before old files were removed. Afterwards the
device answers from the old list or the new one, never a mix, and the next import
works and leaves only the files in use."""

import base64
import subprocess
import sys

import pytest

from kiosk.core import bundle_writer, codes, keys

CRASH = """
import os, sys
from kiosk import cli
from kiosk.core import codelist, importer

step = sys.argv[1]
importer.BATCH = 500
die = lambda: os._exit(137)
if step == "staging":
    stage, calls = importer.listwriter.Builder.stage, []
    def staged(self, runs, seq):
        calls.append(1)
        stage(self, runs, seq)
        if len(calls) == 3:
            die()
    importer.listwriter.Builder.stage = staged
elif step == "sorting":
    report = importer._Reporter.__call__
    def reported(self, done, phase="staging"):
        report(self, done, phase)
        if phase == "sorting":
            die()
    importer._Reporter.__call__ = reported
elif step == "renamed":
    finish = importer.listwriter.Builder.finish
    importer.listwriter.Builder.finish = lambda self, *a: (finish(self, *a), die())
elif step == "switched":
    switch = importer._switch
    importer._switch = lambda *a: (switch(*a), die())
sys.exit(cli.main(sys.argv[2:]))
"""

N = 4_000


def big_bundle(hq, tmp_path, version, base=None, prefix="BIG"):
    salt = base64.b64decode((hq.key.parent / "demo.salt").read_text())
    records = [{"op": "put", "code_hash": codes.code_hash(salt, f"{prefix}{i:07d}"),
                "reward_id": "coffee", "valid_from": None, "valid_until": None,
                "max_uses": 1, "stores": None} for i in range(N)]
    if base is not None:
        records.append({"op": "revoke", "code_hash": codes.code_hash(salt, "AAAA-1111")})
    spec = bundle_writer.Spec("demo", version, "hq1", salt, hq.rewards, base_version=base)
    return bundle_writer.write(spec, records, keys.load_private(hq.key),
                               tmp_path / f"b{version}", per_chunk=1_000)


def import_and_die(device, path, step):
    proc = subprocess.run([sys.executable, "-c", CRASH, step, "--config", str(device.path),
                           "codes", "import", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 137, proc.stderr


def files_in_use(device) -> set:
    have = device.ledger().store.conn.execute(
        "SELECT snapshot_file, overlay_file FROM code_list").fetchone()
    return {n for n in have if n}


@pytest.mark.parametrize("kind", ["full", "delta"])
@pytest.mark.parametrize("step", ["staging", "sorting", "renamed", "switched"])
def test_killed_importer_leaves_a_whole_list(hq, device, tmp_path, step, kind):
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)).rc == 0
    new = big_bundle(hq, tmp_path, 2, base=1 if kind == "delta" else None)
    import_and_die(device, new, step)

    status = device.run("codes", "status", "--json").json()
    if step == "switched":
        assert status["version"] == 2
    else:
        assert status["version"] == 1
    if status["version"] == 1:
        assert status["codes"] == 2
        assert device.verdict("AAAA-1111")["verdict"] == "ready"
        assert device.verdict("BIG0000007")["verdict"] == "unknown"
        assert device.import_(new).rc == 0
    # the whole new list, and nothing of a half one
    expect = N + 1 if kind == "delta" else N
    assert device.run("codes", "status", "--json").json()["codes"] == expect
    assert device.verdict("BIG0003999")["verdict"] == "ready"
    assert device.verdict("AAAA-1111")["verdict"] == ("revoked" if kind == "delta" else "unknown")
    assert device.verdict("BBBB-2222")["verdict"] == ("ready" if kind == "delta" else "unknown")
    # the next import removes whatever the crash left
    assert device.import_(big_bundle(hq, tmp_path, 3, prefix="NXT")).rc == 0
    folder = device.config().data_dir / "kiosk.sqlite.lists"
    assert {p.name for p in folder.iterdir()} == files_in_use(device)
    assert device.verdict("NXT0000001")["verdict"] == "ready"


def test_a_list_file_that_cannot_be_written_is_a_clear_refusal(hq, device, tmp_path, monkeypatch):
    """Disk full (or any write error) while building the file: one line, old list kept."""
    import sqlite3

    from kiosk.core import importer

    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    stage = importer.listwriter.Builder.stage

    def full(self, runs, seq):
        stage(self, runs, seq)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(importer.listwriter.Builder, "stage", full)
    run = device.import_(hq.bundle(["BBBB-2222"], 2))
    assert run.rc == 1 and "[import_failed]" in run.err and "disk is full" in run.err
    assert "version 1 stays in use" in run.err and "Traceback" not in run.err
    assert device.verdict("AAAA-1111")["verdict"] == "ready"
    folder = device.config().data_dir / "kiosk.sqlite.lists"
    assert {p.name for p in folder.iterdir()} == files_in_use(device)
