"""Remote look without SSH: HQ asks a running kiosk-sync for doctor and log lines.

Real mosquitto with the shipped ACL, the real agent in a thread, `kiosk-hq remote`
as HQ runs it. The journal is read with `tail` on a file instead of journalctl (the
test machine's journal has no kiosk units); everything else is the real path.
"""

import json
import threading
import uuid

import pytest
from helpers import run_main

from kiosk import config, connection
from sync import hq_cli, protocol, remote
from sync.agent import Agent
from sync.hq.common import close, connect
from sync.testing import Broker, hq_settings, make_signing_key, wait_until, write_device_config


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        hq_settings(b, "hq")  # the HQ login of the shipped ACL, used below
        yield b


@pytest.fixture
def kiosk(tmp_path, broker, monkeypatch):
    """A running agent for device k1 (and a second device d2 in the same store)."""
    program = f"p{uuid.uuid4().hex[:8]}"
    _, pub = make_signing_key(tmp_path / "keys")
    log = tmp_path / "kiosk.log"
    log.write_text("".join(f"2026-12-01T10:{i:02d}:00 kiosk[1]: line {i}\n" for i in range(30)))
    monkeypatch.setattr(remote, "JOURNAL", ["tail", str(log), "-n"])
    path = write_device_config(tmp_path / "k1", broker, device="k1", store="s1", program=program,
                               trust={"hq1": pub}, password_file=broker.add_device(program, "s1", "k1"))
    agent = Agent(config.load(path))
    agent.remote.first_s = 0.2  # the heartbeat's first doctor summary without the 20 s wait
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    wait_until(lambda: agent.connected, 20, what="agent connected")
    other = broker.add_device(program, "s1", "d2")
    yield {"program": program, "agent": agent, "other_password": other}
    agent.stop()
    thread.join(15)


def hq_args(broker, kiosk, *extra):
    return ["remote", "--broker", broker.url, "--ca", str(broker.pki["ca"]), "--username", "hq",
            "--password-file", str(broker.folder / "hq.password"), "--program", kiosk["program"],
            "--store", "s1", "--device", "k1", "--timeout", "20", *extra]


def test_hq_gets_doctor_and_log_lines(broker, kiosk):
    run = run_main(hq_cli.main, hq_args(broker, kiosk, "doctor", "--json"))
    answer = json.loads(run.out)
    assert answer["ok"] and answer["device"] == "k1"
    names = [c["name"] for c in answer["checks"]]
    assert {"config", "database", "code_list", "disk"} <= set(names)
    assert not {"camera", "gpio", "broker"} & set(names)  # held by the UI / known here
    assert run.rc == (1 if answer["status"] == "FAIL" else 0)
    run = run_main(hq_cli.main, hq_args(broker, kiosk, "doctor"))
    assert "k1 at " in run.out and "database" in run.out
    run = run_main(hq_cli.main, hq_args(broker, kiosk, "logs", "--lines", "3"))
    assert run.rc == 0, run.err
    assert run.out.splitlines() == [f"2026-12-01T10:{i}:00 kiosk[1]: line {i}" for i in (27, 28, 29)]


def test_heartbeat_carries_the_doctor_summary(broker, kiosk):
    summary = wait_until(lambda: kiosk["agent"].heartbeat_body()["doctor"], 20,
                         what="doctor summary")
    assert summary["status"] in ("OK", "WARN", "FAIL") and "database" in summary["checks"]
    status_topic = protocol.device_topic(kiosk["program"], "s1", "k1", "status")
    seen = []
    client = connect(hq_settings(broker), "hq-status-reader")
    try:
        client.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
        client.subscribe(status_topic, qos=1)
        wait_until(lambda: any(b.get("doctor") for b in seen), 20, what="retained heartbeat with doctor")
    finally:
        close(client)


def test_only_hq_may_ask(broker, kiosk):
    """Another device may not publish on k1's request topic (ACL)."""
    program = kiosk["program"]
    request = protocol.device_topic(program, "s1", "k1", remote.REQUEST)
    response = protocol.device_topic(program, "s1", "k1", remote.RESPONSE)
    heard = []
    hq = connect(hq_settings(broker), "hq-listener")
    hq.on_message = lambda c, u, m: heard.append(json.loads(m.payload))
    hq.subscribe(response, qos=1)
    d2 = connect(connection.with_options(connection.parse_url(broker.url), ca=broker.pki["ca"],
                                         username="d2", password_file=kiosk["other_password"]), "d2")
    try:
        d2.publish(request, json.dumps({"id": "from-d2", "ask": "logs"}).encode(), qos=1)
        hq.publish(request, json.dumps({"id": "from-hq", "ask": "uptime"}).encode(), qos=1)
        wait_until(lambda: any(h["id"] == "from-hq" for h in heard), 20, what="HQ's answer")
        # The unknown ask is answered with an error; d2's request never reached k1.
        assert [h for h in heard if h["id"] == "from-hq"][0]["error"].startswith("ask must be")
        assert all(h["id"] != "from-d2" for h in heard)
    finally:
        close(d2)
        close(hq)
