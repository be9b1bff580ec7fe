"""Hostile peers on MQTT (issue 11, "Peers"): each attack runs against a real mosquitto
with the shipped config, ACL and TLS, and three enrolled devices (k1 and k2 in store
s1, k3 in s2) whose stolen credentials the attacker uses. See docs/security.md.

Absence is shown with a sentinel: after the forbidden messages, the attacker sends an
allowed one that takes the same path; once it has had its effect, the forbidden ones
have been handled (one publisher's QoS 1 messages stay in order on a topic, and one
collector handles a device's topic in order).
"""

import json
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from kiosk import connection
from kiosk.core import syncstate
from kiosk.core.verdict import Verdict
from sync import protocol
from sync.hq.common import HqError, connect
from sync.hq.db import HqDb
from sync.testing import Broker, Estate, hq_settings, make_signing_key, wait_until


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def estate(tmp_path, broker, signing):
    e = Estate(tmp_path / "estate", broker, signing)
    yield e
    e.close()


def batch(*events) -> bytes:
    return protocol.encode_events(list(events))


def verdict(estate, device, code):
    return estate.ledgers[device].check(code).verdict


def redeemed_at(estate, device, code):
    return lambda: verdict(estate, device, code) is Verdict.ALREADY_REDEEMED


def hq_rows(db_path, sql, params=()):
    db = HqDb(db_path)
    try:
        return db.rows(sql, params)
    finally:
        db.close()


def online(estate, device):
    wait_until(lambda: estate.connected(device), 30, what=f"{device} connected")


# -- 1. a forged fan-out void must not re-enable a redeemed code --------------------------
def test_forged_fanout_void_cannot_reenable_a_code_redeemed_here(estate):
    estate.collector()
    estate.agent("k1")
    online(estate, "k1")
    k1 = estate.ledgers["k1"]
    mine = k1.confirm("C0010")
    assert mine.verdict is Verdict.REDEEMED
    wait_until(lambda: k1.outbox_depth() == 0, 30, what="k1's redemption at HQ")

    # k2's stolen credentials: a void of k1's redemption, on the store topic and on k2's own
    forged = estate.event("C0010", device="k2", kind="void", voids=mine.redemption_id)
    sentinel = estate.event("C0011", device="k2")
    k2 = estate.peer("k2")
    for message in (batch(forged), batch(sentinel)):
        k2.publish(estate.live(), message)
        k2.publish(estate.topic("k2", "redemptions"), message)
    wait_until(redeemed_at(estate, "k1", "C0011"), 30, what="k2's sentinel applied at k1")

    # even a void that reaches k1 through HQ's own fan-out path cannot undo a local use
    hq = estate.peer()
    forged_again = estate.event("C0010", device="k2", kind="void", voids=mine.redemption_id)
    hq.publish(estate.live(), batch(forged_again, estate.event("C0012", device="k2")))
    wait_until(redeemed_at(estate, "k1", "C0012"), 30, what="HQ sentinel applied at k1")

    assert verdict(estate, "k1", "C0010") is Verdict.ALREADY_REDEEMED
    assert k1.confirm("C0010").verdict is Verdict.ALREADY_REDEEMED  # no second confirm
    assert syncstate.read_status(k1.store)["rejected_fanout"] == 1  # the void HQ's path carried
    row = next(r for r in k1.history() if r["id"] == mine.redemption_id)
    assert row["voided_by"] is None


# -- 2. invented devices and floods ---------------------------------------------------------
def test_invented_devices_and_floods_cannot_block_the_stores_codes(estate):
    estate.collector()
    estate.agent("k1")
    online(estate, "k1")
    ghosts = [estate.event(f"C{i:04d}", device="ghost", store="s1") for i in range(1000)]
    body = batch(*ghosts)
    assert len(body) > 280_000  # the 0.3 MB message of the report
    k2 = estate.peer("k2")
    first = batch(estate.event("C1998", device="k2"))
    k2.publish(estate.live(), first)
    k2.publish(estate.topic("k2", "redemptions"), first)
    wait_until(redeemed_at(estate, "k1", "C1998"), 30, what="k1 subscribed to the fan-out")
    k2.publish(estate.live(), body)
    k2.publish(estate.topic("k2", "redemptions"), body)  # claims "ghost" on k2's own topic
    sentinel = batch(estate.event("C1999", device="k2"))
    k2.publish(estate.live(), sentinel)
    k2.publish(estate.topic("k2", "redemptions"), sentinel)
    wait_until(redeemed_at(estate, "k1", "C1999"), 30, what="k2's sentinel applied at k1")
    blocked = [i for i in range(1000) if verdict(estate, "k1", f"C{i:04d}") is not Verdict.READY]
    assert blocked == []
    mismatches = hq_rows(estate.folder / "hq.sqlite",
                         "SELECT count(*) AS n FROM conflicts WHERE kind = 'sender_mismatch'")
    assert mismatches[0]["n"] == 1000  # reported at HQ, stored under k2, never relayed

    # k2 as itself: HQ relays, k1 applies at most its budget per sender and reports the rest
    for start in range(1000, 1900, 300):
        k2.publish(estate.topic("k2", "redemptions"),
                   batch(*[estate.event(f"C{i:04d}", device="k2") for i in range(start, start + 300)]))
    store = estate.ledgers["k1"].store
    wait_until(lambda: syncstate.read_status(store)["rejected_fanout"] >= 550, 60,
               what="k1 refuses what is over k2's budget")
    blocked = sum(verdict(estate, "k1", f"C{i:04d}") is not Verdict.READY for i in range(1000, 1900))
    assert 298 <= blocked <= 310  # the default budget: 300 events an hour per sender, two
    # of them spent on the sentinels


# -- 3. poison JSON must not kill the agent, retained or not ----------------------------------
POISON = [
    b"[" * 200_000,                                   # RecursionError in json
    b'{"a":' * 60_000 + b"1" + b"}" * 60_000,
    b"[" + b"[1]," * 600_000 + b"1]",                 # 2.4 MB
    b"\xff\xfe not utf-8",
    b'[{"id": "x", "kind": "redeem", "code_hash": "ab", "store": "s1", "device": "k2", '
    b'"at": "never"}]',
    b'[{"id": {"nested": [1]}, "kind": "redeem"}]',
    b'[{"id": "y", "kind": "redeem", "code_hash": "ab", "seq": "1", "store": "s1", '
    b'"device": "k2", "at": "2026-01-01T00:00:00Z"}]',
    b'{"ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # a nested ack
    b'{"ids": "all"}',
]


def test_poison_messages_do_not_kill_the_agent_even_retained(estate):
    estate.collector()
    proc = estate.agent_process("k1")
    online(estate, "k1")
    k2, hq = estate.peer("k2"), estate.peer()

    def sentinel(code):
        body = batch(estate.event(code, device="k2"))
        k2.publish(estate.live(), body)
        k2.publish(estate.topic("k2", "redemptions"), body)
        wait_until(redeemed_at(estate, "k1", code), 60, what=f"sentinel {code} at k1")

    sentinel("C0099")  # k1 is subscribed: what follows reaches it
    for poison in POISON:  # from a stolen device login, retained so every restart sees it
        k2.publish(estate.live(), poison, retain=True)
    for poison in POISON:  # and on every topic the agent reads, even from a rogue HQ login
        hq.publish(estate.live(), poison)
        hq.publish(estate.topic("k1", "acks"), poison)
    hq.publish(protocol.manifest_topic(estate.program), POISON[0], retain=True)
    hq.publish(estate.live(), POISON[1], retain=True)
    sentinel("C0100")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    proc = estate.agent_process("k1", "k1-agent-2.log")  # the restart meets the retained poison
    wait_until(lambda: syncstate.read_status(estate.ledgers["k1"].store)["agent_stopped_at"] is None
               and estate.connected("k1"), 30, what="k1 back")
    sentinel("C0101")
    assert proc.poll() is None
    info = syncstate.read_status(estate.ledgers["k1"].store)
    assert info["rejected_messages"] >= 2  # counted (and logged)
    log = (estate.folder / "k1-agent-2.log").read_text()
    assert "refused" in log and "Traceback" not in log


# -- 4. one device must not stop collection for every store -------------------------------
def test_poison_on_a_devices_own_topic_does_not_stop_the_collector(estate, tmp_path):
    hq = hq_settings(estate.broker)
    db = tmp_path / "hq.sqlite"
    cmd = [sys.executable, "-m", "sync.hq_cli", "collect", "--broker", estate.broker.url,
           "--ca", str(estate.broker.pki["ca"]), "--username", hq.username,
           "--password-file", str(estate.broker.folder / f"{hq.username}.password"),
           "--db", str(db), "--program", estate.program]
    collector = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        k1, k3 = estate.peer("k1"), estate.peer("k3")

        def collected(code):  # sent again every 2 s, as an agent would, until stored
            event = estate.event(code, device="k3")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                k3.publish(estate.topic("k3", "redemptions"), batch(event))
                time.sleep(2)
                if db.exists() and hq_rows(db, "SELECT id FROM events WHERE id = ?", [event["id"]]):
                    return True
            return False

        assert collected("C0200")  # the collector is up and subscribed
        for poison in POISON:
            k1.publish(estate.topic("k1", "redemptions"), poison)
        assert collected("C0201"), "another store's event was not collected after the poison"
        assert collector.poll() is None
    finally:
        collector.send_signal(signal.SIGTERM)
        out = collector.communicate(timeout=15)[0].decode()
    assert collector.returncode == 0, out
    assert f"{len(POISON)} message(s) refused" in out and "Traceback" not in out


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_collector_exits_non_zero_when_its_network_thread_dies(estate, tmp_path, monkeypatch):
    from helpers import run_main

    from sync import hq_cli

    def die(*_args, **_kw):
        raise SystemExit("simulated death of the store thread")  # not an Exception

    monkeypatch.setattr(HqDb, "store_batches", die)
    hq = hq_settings(estate.broker)
    k1 = estate.peer("k1")

    finished = threading.Event()

    def poke():  # until the collector is subscribed and gets one (bounded)
        for _ in range(30):
            if finished.wait(1.0):
                return
            k1.publish(estate.topic("k1", "redemptions"),
                       batch(estate.event("C0300", device="k1")))

    threading.Thread(target=poke, daemon=True).start()
    run = run_main(hq_cli.main, [
        "collect", "--broker", estate.broker.url, "--ca", estate.broker.pki["ca"],
        "--username", hq.username,
        "--password-file", estate.broker.folder / f"{hq.username}.password",
        "--db", tmp_path / "hq.sqlite", "--program", estate.program])
    finished.set()
    assert run.rc == 1
    assert "store thread stopped" in run.err


# -- 5. shared-subscription starvation ---------------------------------------------------
def test_devices_cannot_join_the_collectors_group(estate):
    collector = estate.collector()
    thieves = [estate.peer("k1"), estate.peer("k3")]
    for thief in thieves:  # the old default group, on the collector's exact filter and wider
        thief.subscribe(f"$share/kiosk-hq/{protocol.redemptions_filter(estate.program)}",
                        f"$share/kiosk-hq/{protocol.redemptions_filter()}")
    k2 = estate.peer("k2")
    sent = [estate.event(f"C{i:04d}", device="k2") for i in range(400, 410)]
    for event in sent:
        k2.publish(estate.topic("k2", "redemptions"), batch(event))
    ids = {e["id"] for e in sent}
    wait_until(lambda: {r["id"] for r in collector.db.rows("SELECT id FROM events")} >= ids, 20,
               what="all 10 events at HQ")
    assert all(not thief.got for thief in thieves)
    assert collector.group != "kiosk-hq" and len(collector.group) >= 32  # not guessable


# -- 6. client-id takeover ------------------------------------------------------------------
def test_a_device_cannot_take_over_another_devices_session(estate):
    victim = estate.agent("k2")
    online(estate, "k2")
    drops = []
    paho_disconnect = victim.client.on_disconnect
    victim.client.on_disconnect = lambda *a: (drops.append(a), paho_disconnect(*a))
    k1 = estate.creds("k1")
    for client_id in ("kiosk-s1-k2", "k2", "kiosk-s1-k2", "k2", "k1"):
        attacker = connect(k1, client_id)
        time.sleep(0.3)
        from sync.hq.common import close

        close(attacker)
    time.sleep(1.0)
    assert drops == [] and estate.connected("k2")
    # HQ's processes have a login each, so they do not knock each other off either
    a, b = estate.peer(client_id="hq-tool"), estate.peer(client_id="hq-tool")
    time.sleep(1.0)
    assert a.disconnects == 0 and b.disconnects == 0


# -- 7. voids at HQ -----------------------------------------------------------------------
def test_hq_accepts_a_void_only_from_the_device_that_redeemed(estate):
    collector = estate.collector()
    estate.agent("k1")
    online(estate, "k1")
    k1 = estate.ledgers["k1"]
    theirs, own = k1.confirm("C0500"), k1.confirm("C0501")
    wait_until(lambda: k1.outbox_depth() == 0, 30, what="k1's redemptions at HQ")
    k2 = estate.peer("k2")
    k2.subscribe(estate.topic("k2", "acks"))
    forged = estate.event("C0500", device="k2", kind="void", voids=theirs.redemption_id)
    k2.publish(estate.topic("k2", "redemptions"), batch(forged))
    ack = wait_until(lambda: k2.got, 30, what="HQ's ack to k2")
    ids, conflicts = protocol.decode_ack(ack[0][1])
    assert ids == [forged["id"]] and conflicts == [forged["id"]]
    k1.void(own.redemption_id)  # the device that redeemed may undo it
    wait_until(lambda: k1.outbox_depth() == 0, 30, what="k1's void at HQ")

    events = {r["id"]: r for r in collector.db.rows("SELECT id, voided_by FROM events")}
    assert events[theirs.redemption_id]["voided_by"] is None
    assert events[own.redemption_id]["voided_by"] is not None
    refused = collector.db.rows("SELECT * FROM conflicts WHERE kind = 'void_refused'")
    assert [r["event_id"] for r in refused] == [forged["id"]]
    assert json.loads(refused[0]["detail"])["redeemed_by"] == "s1/k1"
    from sync.hq import report

    assert report.build(collector.db)["totals"]["voided"] == 1


def test_a_void_that_arrives_before_another_devices_redemption_is_refused_too(estate):
    collector = estate.collector()
    k1, k2 = estate.peer("k1"), estate.peer("k2")
    redeem = estate.event("C0600", device="k1")
    early = estate.event("C0600", device="k2", kind="void", voids=redeem["id"])
    k2.publish(estate.topic("k2", "redemptions"), batch(early))
    wait_until(lambda: collector.db.rows("SELECT 1 FROM conflicts WHERE kind = 'void_unknown'"),
               30, what="the early void at HQ")
    k1.publish(estate.topic("k1", "redemptions"), batch(redeem))
    wait_until(lambda: collector.db.rows("SELECT 1 FROM conflicts WHERE kind = 'void_refused'"),
               30, what="the void refused once its redemption arrived")
    assert collector.db.rows("SELECT voided_by FROM events WHERE id = ?",
                             [redeem["id"]]) == [{"voided_by": None}]
    assert not collector.db.rows("SELECT 1 FROM conflicts WHERE kind = 'void_unknown'")


# -- attacks that already held ---------------------------------------------------------------
def test_a_device_cannot_publish_as_another_device_store_or_hq(estate):
    hq = estate.peer()
    hq.subscribe(f"{protocol.ROOT}/{estate.program}/#")
    k1 = estate.peer("k1")
    forbidden = [estate.topic("k2", "redemptions"), estate.topic("k3", "redemptions"),
                 estate.topic("k2", "acks"), estate.topic("k2", "status"),
                 estate.topic("k2", "activity"), estate.topic("k3", "activity"), estate.live("s1"),
                 estate.live("s2"), protocol.manifest_topic(estate.program),
                 protocol.chunk_topic(estate.program, "0" * 64)]
    for topic in forbidden:
        k1.publish(topic, batch(estate.event("C0700", device="k1")))
    own = estate.topic("k1", "status")
    k1.publish(own, b"sentinel")
    wait_until(lambda: any(t == own for t, _ in hq.got), 15, what="sentinel")
    assert [t for t, _ in hq.got] == [own]


def test_wildcard_and_shared_subscriptions_deliver_a_device_nothing_beyond_its_topics(estate):
    """mosquitto 2.0 grants every SUBSCRIBE (its acl_file checks none), but checks each
    delivery against the device's read rules."""
    k1 = estate.peer("k1")
    k1.subscribe("#", f"{protocol.ROOT}/#", f"$share/any/{protocol.ROOT}/#",
                 f"{protocol.ROOT}/+/stores/+/devices/+/+")
    hq, k3 = estate.peer(), estate.peer("k3")
    k3.publish(estate.topic("k3", "redemptions"), batch(estate.event("C0800", device="k3")))
    k3.publish(estate.topic("k3", "status"), b"{}")
    for topic in (estate.topic("k2", "acks"), estate.topic("k3", "acks"), estate.live("s2"),
                  protocol.manifest_topic("another-programme")):
        hq.publish(topic, b"{}")
    own = [estate.topic("k1", "acks"), estate.live("s1")]
    for topic in own:
        hq.publish(topic, b"{}")
    wait_until(lambda: {t for t, _ in k1.got} >= set(own), 15, what="k1's own topics")
    assert {t for t, _ in k1.got} == set(own)


def test_no_login_without_credentials_tls_and_the_right_password(estate, tmp_path):
    b = estate.broker
    good = estate.creds("k1")
    for settings in (connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"]),
                     connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"],
                                               username="k1", password="wrong"),
                     connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"],
                                               username="ghost", password="x")):
        with pytest.raises(HqError, match="refused|Not authorized"):
            connect(settings, f"anon-{uuid.uuid4().hex[:6]}", timeout=5)
    with pytest.raises(HqError):  # no plaintext MQTT on the TLS listener
        connect(connection.BrokerSettings("127.0.0.1", b.port, False, username="k1",
                                          password=good.password), "plain", timeout=5)


CONFIRMER = """
import sys
from kiosk import config, context
from kiosk.core.verdict import Verdict
ledger = context.open_ledger(config.load(sys.argv[1]))
n = sum(ledger.confirm(f"C{i:04d}").verdict is Verdict.REDEEMED for i in range(800, 1000))
print(n)
"""


def test_concurrent_confirms_in_four_processes_redeem_each_code_once(estate):
    cfg = estate.configs["k1"]
    procs = [subprocess.Popen([sys.executable, "-c", CONFIRMER, str(cfg)], stdout=subprocess.PIPE)
             for _ in range(4)]
    counts = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(counts) == 200
    rows = estate.ledgers["k1"].store.conn.execute(
        "SELECT count(*), count(DISTINCT code_hash) FROM redemptions WHERE kind = 'redeem'").fetchone()
    assert rows == (200, 200)


def test_apply_remote_undoes_only_the_senders_own_remote_redemptions(tmp_path, broker, signing):
    """The ledger rule under the fan-out (no broker traffic needed)."""
    estate = Estate(tmp_path / "e", broker, signing, codes=[f"C{i:04d}" for i in range(10)])
    try:
        k1 = estate.ledgers["k1"]
        mine = k1.confirm("C0001").redemption_id
        theirs = estate.event("C0002", device="k2")
        assert k1.apply_remote(theirs)
        for forged in (estate.event("C0001", device="k2", kind="void", voids=mine),
                       estate.event("C0002", device="k3", store="s1", kind="void",
                                    voids=theirs["id"])):
            assert not k1.remote_void_allowed(forged) and not k1.apply_remote(forged)
        assert verdict(estate, "k1", "C0001") is Verdict.ALREADY_REDEEMED
        assert verdict(estate, "k1", "C0002") is Verdict.ALREADY_REDEEMED
        own_void = estate.event("C0002", device="k2", kind="void", voids=theirs["id"])
        assert k1.apply_remote(own_void)
        assert verdict(estate, "k1", "C0002") is Verdict.READY
        # a void seen before its redemption counts only if the same device redeems
        early = estate.event("C0003", device="k3", store="s1", kind="void", voids="later")
        assert k1.apply_remote(early)
        assert k1.apply_remote({**estate.event("C0003", device="k2"), "id": "later"})
        assert verdict(estate, "k1", "C0003") is Verdict.ALREADY_REDEEMED
    finally:
        estate.close()
