"""Deltas over MQTT: HQ keeps a chain retained (the latest full snapshot and every delta
since it), a device walks the shortest path from the version it has, falls back to
the snapshot when its deltas are gone, and ``kiosk-hq publish`` prunes the broker.
Real mosquitto (TLS, shipped config and ACL), real agents, real SQLite."""

import json
import threading
import uuid

import pytest

from kiosk import config, context
from kiosk.core import bundle_writer
from kiosk.core.codes import code_hash
from kiosk.core.verdict import Verdict
from sync import protocol
from sync.agent import Agent
from sync.hq import publish as hq_publish
from sync.hq.common import HqError, close, connect
from sync.lists import plan_path
from sync.testing import (
    Broker,
    hq_settings,
    make_bundle,
    make_signing_key,
    wait_until,
    write_device_config,
)

SALT = b"s" * 32
REWARDS = {"coffee": {"type": "item", "value": 1, "title": {"en": "Free coffee"}}}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        hq_settings(b)
        yield b


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


class World:
    def __init__(self, tmp_path, broker, signing):
        self.tmp, self.broker, self.key, self.pub = tmp_path, broker, signing[0], signing[1]
        self.program = f"p{uuid.uuid4().hex[:8]}"
        self.threads = []

    def device(self, name):
        password = self.broker.add_device(self.program, "s1", name)
        return write_device_config(self.tmp / name, self.broker, device=name, store="s1",
                                   program=self.program, trust={"hq1": self.pub},
                                   password_file=password)

    def start(self, cfg_path):
        agent = Agent(config.load(cfg_path))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self.threads.append((agent, thread))
        return agent

    def stop_all(self):
        for agent, thread in self.threads:
            agent.stop()
            thread.join(15)
        self.threads = []

    def full(self, version, codes):
        return make_bundle(self.tmp / f"full{version}", self.key, key_id="hq1",
                           program=self.program, version=version, codes=codes, salt=SALT)

    def delta(self, version, puts, revokes=()):
        records = [{"op": "put", "code_hash": code_hash(SALT, c), "reward_id": "coffee",
                    "valid_from": None, "valid_until": None, "max_uses": 1, "stores": None}
                   for c in puts] + [{"op": "revoke", "code_hash": code_hash(SALT, c)}
                                     for c in revokes]
        spec = bundle_writer.Spec(self.program, version, "hq1", SALT, REWARDS,
                                  base_version=version - 1)
        return bundle_writer.write(spec, records, self.key, self.tmp / f"delta{version}")

    def publish(self, path):
        return hq_publish.publish(hq_settings(self.broker), path, log=lambda *_: None)

    def retained(self) -> dict[str, bytes]:
        client = connect(hq_settings(self.broker), f"lister-{uuid.uuid4().hex[:6]}")
        marker = f"kiosk/v1/{self.program}/hq/marker/{uuid.uuid4().hex}"
        seen, done = {}, threading.Event()

        def on_message(c, u, msg):
            if msg.topic == marker:
                done.set()
            elif msg.payload:
                seen[msg.topic] = msg.payload

        client.on_message = on_message
        client.subscribe([(f"kiosk/v1/{self.program}/codes/#", 1), (marker, 1)])
        client.publish(marker, b"", qos=1)
        wait_until(done.is_set, 15, what="marker")
        close(client)
        return seen


@pytest.fixture
def world(tmp_path, broker, signing):
    w = World(tmp_path, broker, signing)
    yield w
    w.stop_all()


def version_of(ledger):
    have = ledger.store.current_list()
    return have.version if have else None


def test_offline_device_catches_up_over_deltas_without_the_snapshot(world):
    cfg = world.device("k1")
    ledger = context.open_ledger(config.load(cfg))
    world.publish(world.full(1, ["OLD1", "OLD2", "OLD3"]))
    world.start(cfg)
    wait_until(lambda: version_of(ledger) == 1, 60, what="v1 installed")
    snapshot_file = ledger.store.current_list().snapshot_file
    world.stop_all()  # the kiosk goes offline for a while

    world.publish(world.delta(2, ["NEW2"], revokes=["OLD1"]))
    world.publish(world.delta(3, ["NEW3"]))
    world.publish(world.delta(4, ["NEW4"], revokes=["NEW2"]))
    retained = world.retained()
    p = world.program
    assert {protocol.snapshot_topic(p), protocol.delta_topic(p, 1), protocol.delta_topic(p, 2),
            protocol.delta_topic(p, 3), protocol.manifest_topic(p)} <= set(retained)
    index = protocol.decode_chain(retained[protocol.manifest_topic(p)])
    assert [(e["version"], e["base_version"]) for e in index] == [(1, None), (2, 1), (3, 2), (4, 3)]
    assert all(e["bytes"] > 0 for e in index)

    world.start(cfg)
    wait_until(lambda: version_of(ledger) == 4, 60, what="v4 over three deltas")
    have = ledger.store.current_list()
    assert have.snapshot_file == snapshot_file  # the snapshot was not fetched again
    assert have.base_version == 3 and have.code_count == 4
    expect = {"OLD1": Verdict.REVOKED, "OLD2": Verdict.READY, "NEW2": Verdict.REVOKED,
              "NEW3": Verdict.READY, "NEW4": Verdict.READY, "NOPE": Verdict.UNKNOWN}
    assert {c: ledger.check(c).verdict for c in expect} == expect


def test_device_whose_deltas_were_pruned_takes_the_snapshot_then_deltas(world):
    cfg = world.device("k2")
    ledger = context.open_ledger(config.load(cfg))
    world.publish(world.full(1, ["OLD1"]))
    world.start(cfg)
    wait_until(lambda: version_of(ledger) == 1, 60, what="v1 installed")
    world.stop_all()

    world.publish(world.full(2, ["SNAP1", "SNAP2"]))  # a new chain: delta/1 cannot exist
    world.publish(world.delta(3, ["NEW3"], revokes=["SNAP1"]))
    world.publish(world.delta(4, ["NEW4"]))
    assert plan_path(protocol.decode_chain(world.retained()[protocol.manifest_topic(world.program)]),
                     1, 4) is not None

    world.start(cfg)
    wait_until(lambda: version_of(ledger) == 4, 60, what="v4 via the snapshot")
    expect = {"OLD1": Verdict.UNKNOWN, "SNAP1": Verdict.REVOKED, "SNAP2": Verdict.READY,
              "NEW3": Verdict.READY, "NEW4": Verdict.READY}
    assert {c: ledger.check(c).verdict for c in expect} == expect
    assert ledger.store.current_list().code_count == 3


def test_new_snapshot_prunes_the_chain_and_its_chunks(world):
    world.publish(world.full(1, ["A1"]))
    world.publish(world.delta(2, ["A2"]))
    world.publish(world.delta(3, ["A3"]))
    full = world.full(4, ["B1", "B2"])
    world.publish(full)
    retained = world.retained()
    p = world.program
    chunks = {t.rsplit("/", 1)[1] for t in retained if t.startswith(protocol.chunk_topic(p, ""))}
    assert chunks == {c["sha256"] for c in json.loads((full / "manifest.json").read_bytes())["chunks"]}
    assert not [t for t in retained if "/codes/delta/" in t]
    assert set(retained) - {protocol.chunk_topic(p, c) for c in chunks} == {
        protocol.manifest_topic(p), protocol.snapshot_topic(p)}
    index = protocol.decode_chain(retained[protocol.manifest_topic(p)])
    assert [(e["version"], e["base_version"]) for e in index] == [(4, None)]


def test_delta_on_a_version_the_broker_does_not_end_at_is_refused(world):
    world.publish(world.full(1, ["A1"]))
    world.publish(world.delta(2, ["A2"]))
    spec = bundle_writer.Spec(world.program, 4, "hq1", SALT, REWARDS, base_version=3)
    stray = bundle_writer.write(spec, [], world.key, world.tmp / "stray")
    with pytest.raises(HqError, match="chain ends at 2"):
        world.publish(stray)
    index = protocol.decode_chain(world.retained()[protocol.manifest_topic(world.program)])
    assert [e["version"] for e in index] == [1, 2]


def test_plan_prefers_fewer_bytes():
    chain = [{"version": 10, "base_version": None, "bytes": 1000},
             {"version": 11, "base_version": 10, "bytes": 5},
             {"version": 12, "base_version": 11, "bytes": 5}]
    assert [e["version"] for e in plan_path(chain, 10, 12)] == [11, 12]
    assert [e["version"] for e in plan_path(chain, 3, 12)] == [10, 11, 12]
    assert [e["version"] for e in plan_path(chain, None, 12)] == [10, 11, 12]
    assert plan_path(chain[:2], 10, 12) is None  # a missing delta and no newer snapshot
    # a delta path that costs more than the snapshot path loses
    big = [{"version": 5, "base_version": 4, "bytes": 5000}, *chain[:1],
           {"version": 10, "base_version": 5, "bytes": 5000}, *chain[1:]]
    assert [e["version"] for e in plan_path(big, 4, 12)] == [10, 11, 12]
