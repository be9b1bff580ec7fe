"""The counters' activity to HQ (sync/activity.py, sync/hq/activity.py) and the friction
report (sync/hq/friction.py): a real TLS mosquitto with the shipped config and ACL,
real device databases with the kiosk's audit trail, the real agent and collector."""

import json
import subprocess
import sys
import time

import pytest

from kiosk.core import audit
from kiosk.core.verdict import Verdict
from kiosk.errors import ProtocolError
from sync import activity as device_activity
from sync import protocol
from sync.hq import activity, friction
from sync.hq.db import HqDb
from sync.testing import Broker, Estate, make_signing_key, wait_until


# -- the wire ---------------------------------------------------------------------------
def row(n, kind="verdict", **fields):
    return {"n": n, "at": f"2026-12-01T10:00:{n % 60:02d}Z", "kind": kind, **fields}


def test_activity_messages_are_bounded_and_carry_no_raw_payload():
    body = protocol.encode_activity([row(1, verdict="unknown", source="camera",
                                         masked_code="...1234", note="WIFI:S:x;P:secret;;")])
    assert b"secret" not in body and b"1234" not in body
    assert protocol.decode_activity(body) == [
        {"n": 1, "at": "2026-12-01T10:00:01Z", "kind": "verdict", "source": "camera",
         "verdict": "unknown", "reward_id": None, "code_hash": None}]
    bad = [b"{}", b"[[[[1]]]]", json.dumps([row(True)]).encode(), json.dumps([row(-1)]).encode(),
           json.dumps([row(1, kind="rm -rf")]).encode(), json.dumps([{**row(1), "at": "noon"}]).encode(),
           json.dumps([row(1, source="x" * 300)]).encode(), json.dumps([row(1, verdict=5)]).encode(),
           json.dumps([row(i) for i in range(protocol.MAX_ACTIVITY + 1)]).encode(),
           b"[" + b" " * protocol.MAX_ACTIVITY_BYTES + b"]"]
    for payload in bad:
        with pytest.raises(ProtocolError):
            protocol.decode_activity(payload)


def test_ack_carries_an_optional_strictly_bounded_activity_number():
    assert protocol.decode_ack_full(protocol.encode_ack(["e1"])) == (["e1"], [], None)
    assert protocol.decode_ack_full(protocol.encode_ack([], activity=42)) == ([], [], 42)
    assert protocol.decode_ack(protocol.encode_ack(["e1"], activity=7)) == (["e1"], [])
    for value in (True, -1, 2**63, 1.5, "7", [7]):
        with pytest.raises(ProtocolError):
            protocol.decode_ack_full(json.dumps({"ids": [], "activity": value}).encode())


# -- device -> HQ over a real broker ------------------------------------------------------
@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def estate(tmp_path, signing):
    with Broker(tmp_path / "broker") as broker:
        e = Estate(tmp_path / "estate", broker, signing, codes=[f"C{i:04d}" for i in range(600)])
        yield e
        e.close()


def counter(estate, device):
    """The kiosk's own audit trail on the device database (as kiosk/ui/parts.py opens it)."""
    return audit.AuditLog(estate.ledgers[device].store.path, background=False)


def acked(estate, device) -> int:
    return int(estate.ledgers[device].store.get_meta(device_activity.CURSOR_KEY, "0"))


def test_activity_reaches_hq_after_the_redemptions_once_and_the_cursor_moves_on_ack(estate):
    ledger, trail = estate.ledgers["k1"], counter(estate, "k1")
    for i in range(400):  # a backlog of redemptions (two batches) and their counter steps
        code = f"C{i:04d}"
        trail.record("verdict", ledger.check(code), source="keypad" if i % 4 == 0 else "camera")
        trail.record("confirm", ledger.confirm(code), source="touch")
    trail.record("verdict", ledger.check("C0001"), source="camera")  # already used
    trail.record("scan", source="camera", note="WIFI:S:cafe;P:hunter2;;")
    top = trail.entries()[-1]["id"]
    assert ledger.outbox_depth() == 400

    wire = estate.peer()  # an HQ login watching the device's topics, in arrival order
    wire.subscribe(estate.topic("k1", "redemptions"), estate.topic("k1", "activity"))
    agent = estate.agent("k1")
    wait_until(lambda: any(t.endswith("/redemptions") for t, _ in wire.got), 20,
               what="redemptions sent while HQ is down")
    time.sleep(2.0)  # HQ is down: the outbox stays full, so no activity may leave
    assert not any(t.endswith("/activity") for t, _ in wire.got) and acked(estate, "k1") == 0

    collector = estate.collector()
    wait_until(lambda: acked(estate, "k1") == top, 60, what="activity acked by HQ")
    assert ledger.outbox_depth() == 0
    leaves = [t.rsplit("/", 1)[1] for t, _ in wire.got]
    first = leaves.index("activity")  # every redemption message came before any activity
    assert "redemptions" not in leaves[first:]
    stored = collector.db.rows("SELECT * FROM activity WHERE device = 'k1' ORDER BY n")
    assert [r["n"] for r in stored] == [e["id"] for e in trail.entries()]
    assert {(r["program"], r["store"]) for r in stored} == {(estate.program, "s1")}
    assert stored[-2]["verdict"] == "already_redeemed" and stored[-1]["kind"] == "scan"
    assert sum(r["source"] == "keypad" for r in stored) == 100
    assert not any(b"hunter2" in body for _, body in wire.got)

    # a lost ack (cursor back to 0): everything is sent again, HQ keeps each row once
    with ledger.store.transaction() as tx:
        ledger.store.set_meta(tx, device_activity.CURSOR_KEY, "0")
    agent.activity.reset()
    wait_until(lambda: acked(estate, "k1") == top, 60, what="resent activity acked")
    assert collector.db.count("activity") == len(stored)

    # a redemption made now goes first; new activity follows it
    sent = len(wire.got)
    trail.record("verdict", ledger.check("C0500"), source="camera")
    trail.record("confirm", ledger.confirm("C0500"), source="touch")
    wait_until(lambda: acked(estate, "k1") == trail.entries()[-1]["id"], 30, what="new activity")
    later = [t.rsplit("/", 1)[1] for t, _ in wire.got[sent:]]
    assert later.index("redemptions") < later.index("activity")
    trail.close()


def test_a_device_cannot_write_another_devices_activity(estate, tmp_path):
    collector = estate.collector()
    k1 = estate.peer("k1")
    k1.publish(estate.topic("k2", "activity"), protocol.encode_activity([row(1)]))
    k1.publish(estate.topic("k1", "activity"), protocol.encode_activity([row(2)]))  # sentinel
    wait_until(lambda: collector.db.count("activity") >= 1, 20, what="sentinel stored")
    assert [(r["device"], r["n"]) for r in collector.db.rows("SELECT device, n FROM activity")] \
        == [("k1", 2)]


# -- the friction report ------------------------------------------------------------------
def counter_day(db):
    """Two stores' counters: refusals, a timeout, typed and scanned codes, confirm times."""
    s1 = [row(1, verdict="ready", source="camera", code_hash="a"),
          row(4, "confirm", verdict="redeemed", source="touch", code_hash="a"),   # 3 s
          row(5, verdict="unknown", source="camera", code_hash="u"),
          row(6, verdict="expired", source="keypad", code_hash="x"),
          row(7, verdict="ready", source="keypad", code_hash="b"),
          row(17, "confirm", verdict="redeemed", source="touch", code_hash="b"),  # 10 s
          row(20, verdict="ready", source="camera", code_hash="c"),
          row(50, "timeout", verdict="ready", source="camera", code_hash="c"),
          row(51, verdict="ready", source="camera", code_hash="d"),
          row(56, "confirm", verdict="redeemed", source="touch", code_hash="d"),  # 5 s
          row(57, "scan", source="camera")]
    s2 = [row(1, verdict="wrong_store", source="camera", code_hash="w"),
          row(2, verdict="already_redeemed", source="camera", code_hash="a"),
          row(3, verdict="already_redeemed", source="keypad", code_hash="a")]
    activity.store_rows(db.conn, "p1", "s1", "k1", s1)
    activity.store_rows(db.conn, "p1", "s1", "k1", s1)  # a resend changes nothing
    activity.store_rows(db.conn, "p1", "s2", "k3", s2)


def test_friction_report_counts_refusals_timeouts_typed_share_and_median_confirm(tmp_path):
    db = HqDb(tmp_path / "hq.sqlite")
    counter_day(db)
    report = friction.build(db.conn)
    s1, s2 = report["stores"]
    assert (s1["store"], s1["verdicts"], s1["typed"], s1["scanned"]) == ("s1", 6, 2, 4)
    assert s1["refusals"] == {**dict.fromkeys(friction.REASONS, 0), "unknown": 1, "expired": 1}
    assert (s1["timeouts"], s1["confirms"], s1["median_confirm_s"]) == (1, 3, 5.0)
    assert s1["typed_share"] == round(2 / 6, 3)
    assert s2["refusals"]["already_redeemed"] == 2 and s2["refusals"]["wrong_store"] == 1
    assert s2["median_confirm_s"] is None and s2["typed_share"] == round(1 / 3, 3)
    assert report["totals"]["verdicts"] == 9 and report["totals"]["refusals"]["already_redeemed"] == 2
    assert [s["store"] for s in friction.build(db.conn, ("s2",))["stores"]] == ["s2"]
    assert friction.build(db.conn, ())["stores"] == []
    assert friction.build(db.conn, None, "2026-12-02")["stores"] == []
    assert set(friction.REASONS) == {v.value for v in Verdict} - {"ready", "redeemed"}
    db.close()

    out = subprocess.run([sys.executable, "-m", "sync.hq_cli", "report", "--db",
                          str(tmp_path / "hq.sqlite"), "--friction", "--csv"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("store,verdicts,typed,scanned,typed_share,timeouts,confirms,"
                               "median_confirm_s,already_redeemed")
    assert lines[1].startswith("s1,6,2,4,0.333,1,3,5.0,0,0,1,0,0,1,")
    text = subprocess.run([sys.executable, "-m", "sync.hq_cli", "report", "--db",
                           str(tmp_path / "hq.sqlite"), "--friction"],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and text.stdout.splitlines()[-1].split()[:3] == ["total", "9", "3"]
