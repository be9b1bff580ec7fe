"""The list receiver refuses a forged manifest or an altered chunk at once.

sync/lists.py promises that "a forged or stale list costs no download": the
manifest's signature is checked before any chunk is subscribed to, and each chunk's
bytes are checked against the manifest before they are kept. The end-to-end suites
only see the final rejection (the import re-verifies everything), so these tests
drive a real ListReceiver (real config, SQLite store, signed bundles) and watch what
it subscribes to and reports."""

import json

import pytest

from kiosk.core import bundle, keys
from kiosk.core.clock import Clock
from sync import protocol
from sync.lists import ListReceiver


class Calls:
    def __init__(self):
        self.subscribed, self.unsubscribed, self.reports, self.done = [], [], [], []


@pytest.fixture
def receiver(hq, device, tmp_path):
    cfg = device.config()
    ledger = device.ledger()  # creates the database
    calls = Calls()
    rec = ListReceiver(cfg, ledger.store, Clock(), tmp_path / "work",
                       subscribe=calls.subscribed.extend, unsubscribe=calls.unsubscribed.extend,
                       report=calls.reports.append, done=calls.done.append)
    yield rec, calls
    if rec.importing is not None:
        rec.importing.join(60)
    ledger.store.close()


def manifest_payload(bundle_dir, sign_with=None) -> bytes:
    raw = (bundle_dir / bundle.MANIFEST).read_bytes()
    sig = (bundle_dir / bundle.SIGNATURE).read_bytes() if sign_with is None else sign_with.sign(raw)
    return protocol.encode_manifest(raw, sig)


def test_genuine_manifest_subscribes_to_its_chunks(hq, receiver):
    rec, calls = receiver
    out = hq.bundle(["LIST-0001", "LIST-0002"], 1)
    rec.on_manifest(manifest_payload(out))
    shas = [c["sha256"] for c in json.loads((out / bundle.MANIFEST).read_bytes())["chunks"]]
    assert calls.subscribed == [protocol.chunk_topic(hq.program, s) for s in shas]
    assert calls.reports[-1].state == "downloading"


def test_forged_manifest_is_rejected_before_any_download(hq, receiver, tmp_path):
    rec, calls = receiver
    out = hq.bundle(["EVIL-0001"], 1)
    rogue = keys.load_private(keys.generate(tmp_path / "rogue")[0])
    rec.on_manifest(manifest_payload(out, sign_with=rogue))  # claims the trusted key id
    assert calls.subscribed == []
    assert rec.manifest is None and rec.pending == {}
    assert [(e.state, e.reason) for e in calls.reports] == [("rejected", "bad_signature")]


def test_altered_chunk_is_rejected_and_never_imported(hq, receiver, tmp_path):
    rec, calls = receiver
    out = hq.bundle(["CHNK-0001", "CHNK-0002"], 1)
    rec.on_manifest(manifest_payload(out))
    chunk = json.loads((out / bundle.MANIFEST).read_bytes())["chunks"][0]
    spooled = tmp_path / "spooled.part"
    spooled.write_bytes((out / chunk["name"]).read_bytes() + b"\n")  # one byte more
    rec.on_chunk(chunk["sha256"], spooled)
    assert rec.importing is None, "an altered chunk must not start an import"
    assert calls.reports[-1].state == "rejected" and calls.reports[-1].reason == "chunk_hash"
    assert not spooled.exists()
