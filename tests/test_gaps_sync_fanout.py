"""Store fan-out in the sync agent: only events of this kiosk's own store count.

A device may publish on its own store's live topic; an event in it that claims
another store (a misconfigured or misbehaving kiosk) must not use up a code here.
The agent is real (real config, SQLite, paho client) but never connects: messages
go through its own handler exactly as its main thread would run them."""

import uuid

import pytest

from kiosk.core.verdict import Verdict
from sync import protocol
from sync.agent import Agent

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
