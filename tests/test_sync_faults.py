"""Faults: broker restarts mid-drain, kill -9 of the agent, duplicate deliveries,
forged, stale and broken lists, lost acks, fan-out events of another store. Every
confirmed redemption reaches HQ exactly once."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from kiosk import config, context
from kiosk.core import bundle, importer, keys, syncstate
from kiosk.core.bundle import DirSource
from kiosk.core.clock import Clock
from kiosk.core.verdict import Verdict
from sync import protocol
from sync.agent import Agent
from sync.hq import publish as hq_publish
from sync.hq.collect import Collector
from sync.hq.common import close, connect
from sync.hq.db import HqDb
from sync.lists import ListReceiver
from sync.outbox import OutboxSender
from sync.testing import (
    Broker,
    hq_settings,
    make_bundle,
    make_signing_key,
    wait_until,
    write_device_config,
)

CODES = [f"F{i:05d}" for i in range(3000)]


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        hq_settings(b, "hq")
        yield b


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def world(tmp_path, broker, signing):
    """One device with list v1 installed, an HQ collector running; agent not started."""
    program = f"p{uuid.uuid4().hex[:8]}"
    password = broker.add_device(program, "s1", "k1")
    cfg_path = write_device_config(tmp_path / "k1", broker, device="k1", store="s1",
                                   program=program, trust={"hq1": signing[1]},
                                   password_file=password, mqtt={"batch_size": 50})
    bundle_dir = make_bundle(tmp_path / "b1", signing[0], key_id="hq1", program=program,
                             version=1, codes=CODES, per_chunk=1000)
    ledger = context.open_ledger(config.load(cfg_path))
    importer.import_bundle(ledger.store, DirSource(bundle_dir), {"hq1": signing[0].public_key()},
                           program)
    db = HqDb(tmp_path / "hq.sqlite")
    stop = threading.Event()
    collector = Collector(db, program)
    thread = threading.Thread(target=collector.run, args=(hq_settings(broker),),
                              kwargs={"stop": stop}, daemon=True)
    thread.start()
    wait_until(lambda: collector.client is not None, 15, what="collector connected")
    w = type("World", (), dict(program=program, cfg_path=cfg_path, ledger=ledger,
                               collector=collector, bundle=bundle_dir, tmp=tmp_path))
    yield w
    stop.set()
    thread.join(15)


def start_agent_thread(cfg_path):
    agent = Agent(config.load(cfg_path))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return agent, thread


def hq_ids(collector):
    return [r["id"] for r in collector.db.rows("SELECT id FROM events")]


def assert_exactly_once(world, redemption_ids):
    wait_until(lambda: world.ledger.outbox_depth() == 0, 60, what="outbox drained and acked")
    at_hq = hq_ids(world.collector)
    assert sorted(at_hq) == sorted(redemption_ids)  # all there, none twice


def test_broker_stopped_during_a_batch_and_restarted(world, broker):
    ids = [world.ledger.confirm(code).redemption_id for code in CODES[:1500]]
    agent, thread = start_agent_thread(world.cfg_path)
    try:
        wait_until(lambda: world.ledger.outbox_depth() < 1500, 30, interval=0.005,
                   what="first acks")
        broker.stop()  # mid-drain: some batches acked, some in flight, some unsent
        assert world.ledger.outbox_depth() > 0
        ids += [world.ledger.confirm(code).redemption_id for code in CODES[1500:1600]]
        wait_until(lambda: not syncstate.read_status(world.ledger.store)["connected"], 30,
                   what="agent notices the broker is gone")
        broker.start()
        assert_exactly_once(world, ids)
    finally:
        agent.stop()
        thread.join(15)


def test_kill_9_agent_at_random_moments(world):
    rng = random.Random(6)
    ids = []
    env = {**os.environ, "KIOSK_CONFIG": str(world.cfg_path)}
    cmd = [sys.executable, "-m", "sync.agent_cli"]
    codes = iter(CODES)
    depths = []  # outbox depth after each kill: acks did arrive between kills
    for _round in range(15):
        log = open(world.tmp / "agent.log", "ab")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + rng.uniform(0.2, 1.8)
        while time.monotonic() < deadline:  # the counter keeps redeeming meanwhile
            ids.append(world.ledger.confirm(next(codes)).redemption_id)
            time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        depths.append(world.ledger.outbox_depth())
    ids += [world.ledger.confirm(next(codes)).redemption_id for _ in range(50)]
    assert len(ids) - depths[-1] > 0, "no round got as far as an ack; the test proves nothing"
    print(f"outbox depth after each kill: {depths}; {len(ids)} redemptions")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert_exactly_once(world, ids)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0  # SIGTERM: clean stop


def test_duplicate_deliveries_stored_once_and_acked_each_time(world, broker):
    events = [world.ledger.confirm(code) for code in CODES[:5]]
    batch = world.ledger.pending_events(10)
    settings = hq_settings(broker, "k1")
    device = connect(settings, "dup-sender")
    acks = []
    device.on_message = lambda c, u, m: acks.append(protocol.decode_ack(m.payload))
    device.subscribe(protocol.device_topic(world.program, "s1", "k1", "acks"), qos=1)
    try:
        topic = protocol.device_topic(world.program, "s1", "k1", "redemptions")
        for _ in range(3):  # the same batch, three times (a resend after a lost ack)
            device.publish(topic, protocol.encode_events(batch), qos=1).wait_for_publish(10)
        wait_until(lambda: len(acks) == 3, 30, what="three acks")
    finally:
        close(device)
    assert all(sorted(ids) == sorted(e["id"] for e in batch) for ids, _ in acks)
    assert sorted(hq_ids(world.collector)) == sorted(e.redemption_id for e in events)
    assert world.collector.duplicates == 10

    # and the agent, resending the same events, still leaves exactly one copy each
    agent, thread = start_agent_thread(world.cfg_path)
    try:
        assert_exactly_once(world, [e.redemption_id for e in events])
    finally:
        agent.stop()
        thread.join(15)


def _publish_raw(broker, program, manifest_raw, signature, chunks=()):
    client = connect(hq_settings(broker), "raw-publisher")
    try:
        for sha, payload in chunks:
            client.publish(protocol.chunk_topic(program, sha), payload, qos=1,
                           retain=True).wait_for_publish(10)
        client.publish(protocol.manifest_topic(program),
                       protocol.encode_manifest(manifest_raw, signature), qos=1,
                       retain=True).wait_for_publish(10)
    finally:
        close(client)


def test_forged_stale_and_broken_lists_are_rejected(world, broker, signing, tmp_path):
    agent, thread = start_agent_thread(world.cfg_path)
    store = world.ledger.store

    def list_error_says(word):
        return lambda: word in (syncstate.read_status(store)["list_error"] or "")

    try:
        # signed by a key the device does not trust, under an unknown key id
        rogue_key, _ = make_signing_key(tmp_path / "rogue")
        rogue = make_bundle(tmp_path / "rogue-b", rogue_key, key_id="rogue", program=world.program,
                            version=9, codes=["EVIL1"])
        hq_publish.publish(hq_settings(broker), rogue, log=lambda *_: None)
        wait_until(list_error_says("unknown_key"), 30, what="unknown key rejected")

        # forged: claims the trusted key id, signed by another key
        forged = make_bundle(tmp_path / "forged", rogue_key, key_id="hq1", program=world.program,
                             version=9, codes=["EVIL2"])
        hq_publish.publish(hq_settings(broker), forged, log=lambda *_: None)
        wait_until(list_error_says("bad_signature"), 30, what="forged signature rejected")

        # broken: validly signed, but the chunk on the broker is not the one it names
        good = make_bundle(tmp_path / "v2", signing[0], key_id="hq1", program=world.program,
                           version=2, codes=["GOOD2"])
        raw = (good / "manifest.json").read_bytes()
        chunk = json.loads(raw)["chunks"][0]
        _publish_raw(broker, world.program, raw, (good / "manifest.sig").read_bytes(),
                     chunks=[(chunk["sha256"], b"not the chunk")])
        wait_until(list_error_says("chunk_hash"), 30, what="broken chunk rejected")

        # stale: a validly signed but older version than the installed one
        importer.import_bundle(store, DirSource(good), {"hq1": signing[0].public_key()},
                               world.program)
        hq_publish.publish(hq_settings(broker), world.bundle, log=lambda *_: None)
        wait_until(list_error_says("rollback"), 30, what="stale list rejected")

        have = store.current_list()
        assert have.version == 2  # every rejection left the current list in place
        assert world.ledger.check("GOOD2").verdict is Verdict.READY
        assert world.ledger.check("EVIL1").verdict is Verdict.UNKNOWN
        assert world.ledger.check("EVIL2").verdict is Verdict.UNKNOWN
        assert syncstate.read_status(store)["list_error"]
    finally:
        agent.stop()
        thread.join(15)


# -- The list receiver refuses a forged manifest or an altered chunk at once.
#
# sync/lists.py promises that "a forged or stale list costs no download": the
# manifest's signature is checked before any chunk is subscribed to, and each chunk's
# bytes are checked against the manifest before they are kept. The end-to-end suites
# only see the final rejection (the import re-verifies everything), so these tests
# drive a real ListReceiver (real config, SQLite store, signed bundles) and watch what
# it subscribes to and reports.

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


# -- Store fan-out in the sync agent: only events of this kiosk's own store count.
#
# A device may publish on its own store's live topic; an event in it that claims
# another store (a misconfigured or misbehaving kiosk) must not use up a code here.
# The agent is real (real config, SQLite, paho client) but never connects: messages
# go through its own handler exactly as its main thread would run them.

MQTT = '[mqtt]\nbroker = "mqtt://127.0.0.1:9"\n'  # nothing listens: the agent stays offline


@pytest.fixture
def agent(tmp_path, hq):
    from helpers import make_device

    device = make_device(tmp_path / "fan", hq, name="kiosk-1", store="s1", extra=MQTT)
    assert device.import_(hq.bundle(["FANS-0001", "FANS-0002", "FANS-0003"], 1)).rc == 0
    a = Agent(device.config())
    yield a
    a.ledger.store.close()


def event(agent, code: str, *, device: str, store: str) -> dict:
    return {"id": str(uuid.uuid4()), "seq": 1, "device": device, "store": store,
            "kind": "redeem", "voids": None, "code_hash": agent.ledger.check(code).code_hash,
            "reward_id": "coffee", "list_version": 1, "at": "2026-01-01T10:00:00.000Z",
            "clock": "synced", "staff": None}


def deliver(agent, events: list[dict]) -> None:
    agent._handle_safely(("message", agent.topics["live"], protocol.encode_events(events)))


def test_fanout_from_a_neighbour_uses_the_code_here(agent):
    deliver(agent, [event(agent, "FANS-0001", device="kiosk-2", store="s1")])
    result = agent.ledger.check("FANS-0001")
    assert result.verdict is Verdict.ALREADY_REDEEMED
    assert result.detail["last_device"] == "kiosk-2"


def test_fanout_claiming_another_store_is_ignored(agent):
    deliver(agent, [event(agent, "FANS-0002", device="kiosk-9", store="s2"),
                    event(agent, "FANS-0003", device="kiosk-2", store="s1")])
    assert agent.ledger.check("FANS-0002").verdict is Verdict.READY
    assert agent.ledger.check("FANS-0003").verdict is Verdict.ALREADY_REDEEMED
    rows = agent.ledger.store.conn.execute("SELECT store FROM redemptions").fetchall()
    assert rows == [("s1",)]


# -- The outbox keeps every event HQ has not acknowledged by id.
#
# An ack names the events HQ stored; only those may leave the outbox. Events sent in the
# same window but not named (HQ stored a batch but its ack for the next one was lost)
# must stay and be sent again after a reset. Real ledger and SQLite; the publish side
# is a list, because this is about what the sender deletes, not about MQTT.

OUTBOX_CODES = ["OUTB-0001", "OUTB-0002", "OUTB-0003", "OUTB-0004"]


@pytest.fixture
def redeemed(hq, device):
    assert device.import_(hq.bundle(OUTBOX_CODES, 1)).rc == 0
    ledger = device.ledger()
    for code in OUTBOX_CODES:
        assert ledger.confirm(code).verdict == "redeemed"
    yield ledger
    ledger.store.close()


def test_ack_deletes_only_the_named_events(redeemed):
    sent: list[list[dict]] = []
    sender = OutboxSender(redeemed, sent.append, batch_size=2, window=4)
    assert sender.pump(now=0.0) == 4
    ids = [e["id"] for batch in sent for e in batch]
    assert len(ids) == 4

    assert sender.on_ack(ids[:2]) == 2
    assert redeemed.outbox_depth() == 2
    assert [e["id"] for e in redeemed.pending_events(10)] == ids[2:]

    # the ack of the second batch never came: after a reset exactly those are resent
    sent.clear()
    sender.reset()
    assert sender.pump(now=1.0) == 2
    assert [e["id"] for batch in sent for e in batch] == ids[2:]


def test_ack_of_unknown_ids_deletes_nothing(redeemed):
    sender = OutboxSender(redeemed, lambda events: None, batch_size=10)
    sender.pump(now=0.0)
    assert sender.on_ack(["00000000-0000-7000-8000-000000000000"]) == 0
    assert redeemed.outbox_depth() == len(OUTBOX_CODES)


def test_the_heartbeat_carries_the_device_state_the_ui_writes(agent):
    """The UI writes camera/printer/paper/last scan through kiosk.core.syncstate; the
    heartbeat sends exactly that (null until written, cleared by None)."""
    from kiosk.core import syncstate

    body = agent.heartbeat_body()
    assert [body[k] for k in ("camera", "printer", "paper", "last_scan")] == [None] * 4
    syncstate.write_device_state(agent.store, camera="ok", printer="paper_out", paper="out",
                                 last_scan="2026-12-01T10:00:00Z")
    body = agent.heartbeat_body()
    assert (body["camera"], body["printer"], body["paper"]) == ("ok", "paper_out", "out")
    assert body["last_scan"] == "2026-12-01T10:00:00Z"
    syncstate.write_device_state(agent.store, printer=None)
    assert agent.heartbeat_body()["printer"] is None
    with pytest.raises(ValueError, match="unknown device state"):
        syncstate.write_device_state(agent.store, toaster="on")
