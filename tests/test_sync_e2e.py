"""End to end over a real mosquitto (TLS, shipped ACL): lists down, redemptions up."""

import json
import threading
import uuid

import pytest

from kiosk import config, context
from kiosk.core import importer, syncstate
from kiosk.core.verdict import Verdict
from sync import protocol
from sync.hq import publish as hq_publish
from sync.hq.common import close, connect
from sync.hq.db import HqDb
from sync.testing import (
    Broker,
    hq_settings,
    make_bundle,
    make_signing_key,
    wait_until,
    write_device_config,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        hq_settings(b, "hq")
        yield b


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


def device(tmp_path, broker, signing, program, store, name, **mqtt):
    password = broker.add_device(program, store, name)
    return write_device_config(tmp_path / name, broker, device=name, store=store, program=program,
                               trust={"hq1": signing[1]}, password_file=password, mqtt=mqtt)


def outbox_empty(ledger):
    return ledger.outbox_depth() == 0


def test_bundle_to_device_and_redemption_to_hq(tmp_path, broker, signing, running):
    program = f"p{uuid.uuid4().hex[:8]}"
    cfg_path = device(tmp_path, broker, signing, program, "s1", "k1")
    cfg = config.load(cfg_path)
    agent = running.agent(cfg_path)
    collector = running.collector(broker, tmp_path / "hq.sqlite", program)

    bundle_dir = make_bundle(tmp_path / "b1", signing[0], key_id="hq1", program=program,
                             version=1, codes=[f"CODE{i:04d}" for i in range(2500)], per_chunk=1000)
    hq_publish.publish(hq_settings(broker), bundle_dir, log=lambda *_: None)

    ledger = context.open_ledger(cfg)
    have = wait_until(lambda: ledger.store.current_list(), 60, what="list installed by agent")
    assert have.version == 1 and have.code_count == 2500
    assert ledger.check("CODE0042").verdict is Verdict.READY

    result = ledger.confirm("CODE0042", staff="ann")
    assert result.verdict is Verdict.REDEEMED
    wait_until(lambda: outbox_empty(ledger), 30, what="outbox acked")
    rows = collector.db.rows("SELECT * FROM events WHERE id = ?", [result.redemption_id])
    assert len(rows) == 1 and rows[0]["device"] == "k1" and rows[0]["store"] == "s1"
    assert rows[0]["staff"] == "ann"

    info = wait_until(lambda: (s := syncstate.read_status(ledger.store))["connected"] and s["last_sync"] and s,
                      30, what="status connected")
    assert info["pending"] == 0 and info["list_version"] == 1
    assert agent.heartbeat_body()["list_version"] == 1

    # A newer list replaces the old one atomically; the old chunks are cleared.
    bundle2 = make_bundle(tmp_path / "b2", signing[0], key_id="hq1", program=program, version=2,
                          codes=["NEWCODE1"], per_chunk=1000)
    hq_publish.publish(hq_settings(broker), bundle2, log=lambda *_: None)
    wait_until(lambda: ledger.store.current_list().version == 2, 60, what="list v2")
    assert ledger.check("NEWCODE1").verdict is Verdict.READY
    assert ledger.check("CODE0001").verdict is Verdict.UNKNOWN
    assert retained_chunks(broker, program) == {
        c["sha256"] for c in json.loads((bundle2 / "manifest.json").read_bytes())["chunks"]}


def retained_chunks(broker, program) -> set[str]:
    """sha256s of the chunks retained on the broker (a marker ends the retained burst)."""
    client = connect(hq_settings(broker), "chunk-lister")
    marker = f"kiosk/v1/{program}/hq/marker/{uuid.uuid4().hex}"
    seen, done = set(), threading.Event()

    def on_message(c, u, msg):
        if msg.topic == marker:
            done.set()
        elif msg.payload:
            seen.add(msg.topic.rsplit("/", 1)[1])

    client.on_message = on_message
    client.subscribe([(protocol.chunk_topic(program, "+"), 1), (marker, 1)])
    client.publish(marker, b"", qos=1)
    wait_until(done.is_set, 15, what="marker")
    close(client)
    return seen


def test_store_fanout_refuses_code_redeemed_next_door(tmp_path, broker, signing, running):
    program = f"p{uuid.uuid4().hex[:8]}"
    paths = [device(tmp_path, broker, signing, program, "shop", name) for name in ("c1", "c2")]
    bundle_dir = make_bundle(tmp_path / "b", signing[0], key_id="hq1", program=program,
                             version=1, codes=["FAN1", "FAN2"])
    hq_publish.publish(hq_settings(broker), bundle_dir, log=lambda *_: None)
    for path in paths:
        running.agent(path)
    running.collector(broker, tmp_path / "hq.sqlite", program)  # HQ relays the fan-out
    one, two = (context.open_ledger(config.load(p)) for p in paths)
    for ledger in (one, two):
        wait_until(lambda ledger=ledger: ledger.store.current_list(), 60, what="list on both")
        wait_until(lambda ledger=ledger: syncstate.read_status(ledger.store)["connected"], 30,
                   what="both connected")

    # junk on the fan-out topic is logged and ignored; the agents carry on
    junk = connect(hq_settings(broker), "junk")
    for body in (b"not json", b'[{"id": "x", "kind": "redeem", "code_hash": "ab", "store": "shop"}]'):
        junk.publish(protocol.live_topic(program, "shop"), body, qos=1).wait_for_publish(10)
    close(junk)
    assert one.confirm("FAN1").verdict is Verdict.REDEEMED
    verdict = wait_until(lambda: (v := two.check("FAN1").verdict) is not Verdict.READY and v, 30,
                         what="counter 2 learns of counter 1's redemption")
    assert verdict is Verdict.ALREADY_REDEEMED
    assert two.confirm("FAN1").verdict is Verdict.ALREADY_REDEEMED
    assert two.check("FAN2").verdict is Verdict.READY  # only that code


def test_two_offline_kiosks_same_code_one_conflict(tmp_path, broker, signing, running):
    program = f"p{uuid.uuid4().hex[:8]}"
    bundle_dir = make_bundle(tmp_path / "b", signing[0], key_id="hq1", program=program,
                             version=1, codes=["TWICE", ("MULTI", 2)])
    paths = []
    for store, name in (("north", "n1"), ("south", "s1")):
        paths.append(device(tmp_path, broker, signing, program, store, name))
        ledger = context.open_ledger(config.load(paths[-1]))
        from kiosk.core.bundle import DirSource

        importer.import_bundle(ledger.store, DirSource(bundle_dir), {"hq1": signing[0].public_key()},
                               program)
        assert ledger.confirm("TWICE").verdict is Verdict.REDEEMED  # both offline
        assert ledger.confirm("MULTI").verdict is Verdict.REDEEMED
    db_path = tmp_path / "hq.sqlite"
    db = HqDb(db_path)
    db.load_bundle(bundle_dir)
    db.close()
    collector = running.collector(broker, db_path, program)
    ledgers = [context.open_ledger(config.load(p)) for p in paths]
    for path in paths:
        running.agent(path)
    for ledger in ledgers:
        wait_until(lambda ledger=ledger: outbox_empty(ledger), 30, what="both outboxes acked")
    assert collector.db.count("events") == 4
    conflicts = collector.db.rows("SELECT * FROM conflicts")
    assert len(conflicts) == 1 and conflicts[0]["kind"] == "over_redeemed"
    detail = json.loads(conflicts[0]["detail"])
    assert detail["max_uses"] == 1 and len(detail["earlier"]) == 1


def test_hq_command_line_publish_collect_once_report(tmp_path, broker, signing, running, capsys):
    from sync import hq_cli

    program = f"p{uuid.uuid4().hex[:8]}"
    cfg_path = device(tmp_path, broker, signing, program, "s9", "k9")
    ledger = context.open_ledger(config.load(cfg_path))
    running.agent(cfg_path)
    bundle_dir = make_bundle(tmp_path / "b", signing[0], key_id="hq1", program=program,
                             version=1, codes=["CLI00001", ("CLI00002", 3)])
    opts = ["--broker", broker.url, "--ca", str(broker.pki["ca"]), "--username", "hq",
            "--password-file", str(broker.folder / "hq.password")]
    db = str(tmp_path / "hq.sqlite")
    assert hq_cli.main(["publish", str(bundle_dir), *opts, "--db", db]) == 0
    assert "published" in capsys.readouterr().out
    wait_until(lambda: ledger.store.current_list(), 60, what="list installed")
    ids = {ledger.confirm("CLI00002").redemption_id for _ in range(2)}
    assert hq_cli.main(["collect", *opts, "--db", db, "--program", program, "--once",
                        "--idle", "8"]) == 0
    assert "2 new event(s)" in capsys.readouterr().out
    wait_until(lambda: outbox_empty(ledger), 30, what="acked")
    assert hq_cli.main(["report", "--db", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"] == {"redeemed": 2, "voided": 0, "conflicts": 0}  # max_uses 3
    assert {r["id"] for r in HqDb(db).rows("SELECT id FROM events")} == ids
    assert hq_cli.main(["publish", str(tmp_path / "missing"), *opts]) == 1
    assert "no bundle" in capsys.readouterr().err
