"""HQ database rules, report, enroll, credentials, protocol and `kiosk sync-status`
(no broker needed here; the broker tests are in the other test_sync_* files)."""

import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from kiosk import cli, config, context
from kiosk.core import syncstate
from kiosk.core.bundle import DirSource
from kiosk.core.importer import import_bundle
from sync import agent_cli, hq_cli, protocol
from sync.hq import credentials
from sync.hq.db import HqDb
from sync.testing import make_bundle, make_signing_key


def ev(i, code="c" * 64, kind="redeem", voids=None, at="2026-11-20T10:00:00.000Z", reward="coffee"):
    return {"id": f"e{i}", "seq": i, "kind": kind, "voids": voids, "code_hash": code,
            "reward_id": reward, "list_version": 1, "at": at, "clock": "synced", "staff": None}


@pytest.fixture
def db(tmp_path):
    d = HqDb(tmp_path / "hq.sqlite")
    yield d
    d.close()


def test_events_stored_once_and_conflicts_flagged_once(db):
    first = db.store_batch("p", "s1", "k1", [ev(1), ev(2, code="d" * 64)])
    assert first.new == 2 and first.ids == ["e1", "e2"] and first.conflicts == []
    again = db.store_batch("p", "s1", "k1", [ev(1), ev(2, code="d" * 64)])
    assert again.new == 0 and again.ids == ["e1", "e2"]  # still acked
    second = db.store_batch("p", "s2", "k2", [ev(3)])  # same single-use code elsewhere
    assert second.conflicts == ["e3"]
    assert db.store_batch("p", "s2", "k2", [ev(3)]).conflicts == []  # replay: not re-flagged
    assert db.count("events") == 3 and db.count("conflicts") == 1
    row = db.rows("SELECT * FROM events WHERE id = 'e3'")[0]
    assert (row["store"], row["device"]) == ("s2", "k2")  # the topic names the sender


def test_max_uses_from_bundle_and_voids(db, tmp_path):
    key, _pub = make_signing_key(tmp_path / "k")
    from kiosk.core.codes import code_hash

    bundle = make_bundle(tmp_path / "b", key, key_id="hq1", program="p", version=1,
                         codes=[("MULTI", 2)], salt=b"s" * 32)
    assert db.load_bundle(bundle) == ("p", 1)
    h = code_hash(b"s" * 32, "MULTI")
    assert db.store_batch("p", "s", "k", [ev(1, h), ev(2, h)]).conflicts == []
    # a void frees a use; a void of an unknown event is flagged until that event arrives
    assert db.store_batch("p", "s", "k", [ev(4, h, "void", voids="e1")]).conflicts == []
    assert db.store_batch("p", "s", "k", [ev(3, h)]).conflicts == []
    assert db.store_batch("p", "s", "k", [ev(5, h)]).conflicts == ["e5"]
    assert db.store_batch("p", "s", "k", [ev(7, h, "void", voids="e6")]).conflicts == ["e7"]
    assert db.store_batch("p", "s", "k", [ev(6, h)]).conflicts == []
    kinds = [r["kind"] for r in db.rows("SELECT kind FROM conflicts ORDER BY event_id")]
    assert kinds == ["over_redeemed"]  # e7's void_unknown was resolved by e6


def test_refused_voids_and_sender_mismatches_are_flagged_and_not_relayed(db):
    redeem = {**ev(1), "device": "k1", "store": "s1"}
    assert [e["id"] for e in db.store_batch("p", "s1", "k1", [redeem]).relay] == ["e1"]
    foreign = {**ev(2, kind="void", voids="e1"), "device": "k2", "store": "s1"}
    liar = {**ev(3, code="d" * 64), "device": "ghost", "store": "s1"}
    stored = db.store_batch("p", "s1", "k2", [foreign, liar])
    assert stored.conflicts == ["e2", "e3"] and stored.relay == []
    assert db.store_batch("p", "s1", "k2", [foreign, liar]).relay == []  # resends neither
    assert db.rows("SELECT voided_by FROM events WHERE id = 'e1'") == [{"voided_by": None}]
    kinds = {r["event_id"]: r["kind"] for r in db.rows("SELECT * FROM conflicts")}
    assert kinds == {"e2": "void_refused", "e3": "sender_mismatch"}
    own = db.store_batch("p", "s1", "k1", [{**ev(4, kind="void", voids="e1"), "device": "k1"}])
    assert own.conflicts == [] and [e["id"] for e in own.relay] == ["e4"]
    assert db.rows("SELECT voided_by FROM events WHERE id = 'e1'") == [{"voided_by": "e4"}]
    # a resend is relayed again, named by the topic, with only the wire fields
    again = db.store_batch("p", "s1", "k1", [{**redeem, "extra": 1}]).relay
    assert again == [{**{k: redeem.get(k) for k in protocol.EVENT_FIELDS}}]


def test_collector_group_is_random_and_kept(tmp_path):
    first = HqDb(tmp_path / "hq.sqlite")
    group = first.collector_group()
    assert group.startswith("hq-") and len(group) == 35 and group == first.collector_group()
    first.close()
    second = HqDb(tmp_path / "hq.sqlite")
    assert second.collector_group() == group  # collectors of one database share it
    second.close()
    assert HqDb(tmp_path / "other.sqlite").collector_group() != group


def test_agent_settings_bound_the_peer_budget_and_batch_size(tmp_path):
    from kiosk.errors import ConfigError
    from sync.agent import AgentSettings

    def settings(extra):
        path = tmp_path / "kiosk.toml"
        path.write_text('[device]\nid = "k1"\nstore = "s1"\nprogram = "p"\n'
                        f'data_dir = "{tmp_path}"\n[mqtt]\nbroker = "mqtt://h"\n{extra}\n')
        return AgentSettings.from_section(config.load(path).section("mqtt"))

    assert settings("").peer_budget_per_hour == 300
    assert settings("peer_budget_per_hour = 50").peer_budget_per_hour == 50
    for bad in ("peer_budget_per_hour = 0", "batch_size = 5000"):
        with pytest.raises(ConfigError):
            settings(bad)


def run_hq(argv, capsys):
    code = hq_cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_formats(db, tmp_path, capsys):
    db.store_batch("p", "s1", "k1", [ev(1), ev(2, code="d" * 64), ev(3, code="d" * 64, kind="void", voids="e2")])
    db.store_batch("p", "s2", "k2", [ev(4, at="2026-11-21T09:00:00Z")])
    path = str(tmp_path / "hq.sqlite")
    code, out, _ = run_hq(["report", "--db", path, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["totals"] == {"redeemed": 3, "voided": 1, "conflicts": 1}
    assert {(r["day"], r["store"], r["redeemed"], r["net"]) for r in report["rows"]} == {
        ("2026-11-20", "s1", 2, 1), ("2026-11-21", "s2", 1, 1)}
    assert report["conflicts"][0]["event_id"] == "e4"
    code, out, _ = run_hq(["report", "--db", path, "--csv", "--since", "2026-11-21"], capsys)
    table, conflicts = out.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [(r["store"], r["redeemed"]) for r in rows] == [("s2", "1")]
    assert "over_redeemed" in conflicts
    code, out, _ = run_hq(["report", "--db", path], capsys)
    assert "CONFLICT over_redeemed" in out and "total: 3 redeemed" in out
    code, _, err = run_hq(["report", "--db", path, "--since", "someday"], capsys)
    assert code == 2 and "not a date" in err
    code, _, err = run_hq(["report", "--db", str(tmp_path / "none.sqlite")], capsys)
    assert code == 1 and "no database" in err


def test_password_hash_matches_mosquitto_passwd(tmp_path):
    pwfile = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "u1", "s3cret"], check=True)
    encoded = pwfile.read_text().strip().split(":", 1)[1]
    assert credentials.check_password("s3cret", encoded)
    assert not credentials.check_password("wrong", encoded)
    ours = credentials.password_hash("s3cret")
    assert ours.startswith("$7$101$") and credentials.check_password("s3cret", ours)


def test_enroll_writes_a_loadable_config_and_broker_entries(tmp_path, capsys):
    _key, pub = make_signing_key(tmp_path / "keys")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    acl.write_text("user hq\ntopic readwrite kiosk/v1/#\n")
    args = ["enroll", "--device", "k7", "--store", "s3", "--program", "loyal",
            "--broker", "mqtts://hq.example:8883", "--trust", f"hq1={pub}",
            "--passwd-file", str(passwd), "--acl-file", str(acl), "--data-dir", "data"]
    code, out, err = run_hq([*args, "--out", str(tmp_path / "k7")], capsys)
    assert code == 0, err
    cfg = config.load(tmp_path / "k7" / "kiosk.toml")
    assert (cfg.device_id, cfg.store, cfg.program) == ("k7", "s3", "loyal")
    assert set(cfg.trusted_keys) == {"hq1"}
    from kiosk.connection import from_section

    broker = from_section(cfg.section("mqtt"))
    assert broker.tls and broker.username == "k7" and broker.port == 8883
    user, encoded = passwd.read_text().strip().split(":", 1)
    assert user == "k7" and credentials.check_password(broker.password, encoded)
    assert "topic write kiosk/v1/loyal/stores/s3/devices/k7/redemptions" in acl.read_text()
    # enrolling again replaces the entries instead of adding more
    code, _, _ = run_hq([*args, "--out", str(tmp_path / "k7b")], capsys)
    assert code == 0 and acl.read_text().count("user k7") == 1
    assert len(passwd.read_text().splitlines()) == 1
    code, _, err = run_hq([*args, "--out", str(tmp_path / "k7")], capsys)
    assert code == 1 and "exists" in err
    code, _, err = run_hq(["enroll", "--device", "bad/id", "--store", "s", "--program", "p",
                           "--broker", "mqtts://h", "--out", str(tmp_path / "x")], capsys)
    assert code == 1 and "--device" in err


def test_wire_and_csv_errors_share_the_kiosk_root(tmp_path):
    """A bad message and a bad CSV row are KioskErrors and ValueErrors (one exception root)."""
    from kiosk.core import bundle_writer
    from kiosk.errors import CsvError, KioskError, ProtocolError

    with pytest.raises(KioskError) as wire:
        protocol.decode_ack(b"[[[[")
    assert isinstance(wire.value, ProtocolError) and isinstance(wire.value, ValueError)
    assert protocol.ProtocolError is ProtocolError
    with pytest.raises(KioskError) as row:
        csv = tmp_path / "codes.csv"
        csv.write_text("code,reward_id,op\nA1,r1,steal\n")
        list(bundle_writer.records_from_csv(csv, b"salt", {"r1": {}}))
    assert isinstance(row.value, CsvError) and isinstance(row.value, ValueError)
    assert row.value.line == 2 and "op must be put or revoke" in str(row.value)

def test_broker_user_gives_each_hq_process_its_own_login(tmp_path, capsys):
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    acl.write_text("user hq\ntopic readwrite kiosk/v1/#\n")
    for _ in range(2):  # again: replaced, not added
        code, out, err = run_hq(["broker-user", "hq-collect", "--passwd-file", str(passwd),
                                 "--acl-file", str(acl), "--password-out",
                                 str(tmp_path / "hq-collect-password")], capsys)
        assert code == 0, err
    assert "HQ block" in out
    text = acl.read_text()
    assert text.count("user hq-collect\ntopic readwrite kiosk/v1/#\n") == 1
    assert text.startswith("user hq\n")
    password = (tmp_path / "hq-collect-password").read_text().strip()
    user, encoded = passwd.read_text().strip().split(":", 1)
    assert user == "hq-collect" and credentials.check_password(password, encoded)
    # devices only read their store's fan-out: HQ relays it
    block = credentials.device_acl("p", "s1", "k1")
    assert "topic read kiosk/v1/p/stores/s1/live" in block and "readwrite" not in block


def test_protocol_rejects_bad_messages():
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_events(b"{}")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_events(b'[{"id": "x", "kind": "steal", "code_hash": "a"}]')
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_manifest(b'{"manifest": "###"}')
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_ack(b'{"ids": [1]}')
    assert protocol.decode_manifest(protocol.encode_manifest(b"m", b"s")) == (b"m", b"s")
    t = protocol.parse_device_topic(protocol.device_topic("p", "s", "d", "redemptions"))
    assert (t.program, t.store, t.device, t.leaf) == ("p", "s", "d", "redemptions")


@pytest.fixture
def device_cfg(tmp_path):
    key, pub = make_signing_key(tmp_path / "keys")
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[device]\nid = "k1"\nstore = "s1"\nprogram = "p"\ndata_dir = "data"\n'
                    f'[trust.keys]\nhq1 = "{pub}"\n')
    bundle = make_bundle(tmp_path / "b", key, key_id="hq1", program="p", version=1, codes=["ALPHA001", "ALPHA002"])
    ledger = context.open_ledger(config.load(path))
    import_bundle(ledger.store, DirSource(bundle), {"hq1": key.public_key()}, "p")
    return path, ledger


def test_sync_status_cli_and_staleness(device_cfg, capsys):
    path, ledger = device_cfg
    r = ledger.confirm("ALPHA001")
    assert r.verdict == "redeemed", r
    assert cli.main(["--config", str(path), "sync-status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["connected"] is False and info["pending"] == 1 and info["last_sync"] is None
    now = datetime.now(UTC)
    syncstate.write_status(ledger.store, connected=True, seen_at=now, last_sync=now,
                        broker="mqtts://hq:8883")
    assert cli.main(["--config", str(path), "sync-status"]) == 0
    out = capsys.readouterr().out
    assert "connected to mqtts://hq:8883" in out and "1 event(s)" in out
    assert cli.main(["--config", str(path), "sync-status", "--lang", "ru"]) == 0
    out = capsys.readouterr().out
    assert "подключено к mqtts://hq:8883" in out and "connected" not in out and "event(s)" not in out
    later = now + syncstate.STALE_AFTER + timedelta(seconds=1)
    assert syncstate.read_status(ledger.store, now=later)["connected"] is False  # agent killed


def test_sync_status_shows_the_agents_list_refusal_in_the_technicians_language(device_cfg, tmp_path, capsys):
    """The agent refuses a list signed by a key the device does not trust: `kiosk
    sync-status --lang ru` says why in Russian, its --json and the heartbeat to HQ keep
    the English text; so does the agent's connection error."""
    from kiosk.i18n import Msg
    from sync.agent import Agent

    path, ledger = device_cfg
    with open(path, "a") as fh:
        fh.write('[mqtt]\nbroker = "mqtt://127.0.0.1:1"\n')  # never dialled here
    rogue, _pub = make_signing_key(tmp_path / "rogue")
    forged = make_bundle(tmp_path / "forged", rogue, key_id="rogue", program="p", version=2,
                         codes=["BETA0001"])
    agent = Agent(config.load(path))
    try:
        agent.lists.on_manifest(protocol.encode_manifest((forged / "manifest.json").read_bytes(),
                                                         (forged / "manifest.sig").read_bytes()))
        agent.inbox.put(("error", Msg("cannot reach the broker")))
        agent._drain(timeout=1)
        body = agent.heartbeat_body()
    finally:
        agent.store.close()
    english = "signed with key 'rogue', which this device does not trust (trusted: hq1) [unknown_key]; "
    assert type(body["list_error"]) is str and body["list_error"].startswith(english), body
    assert type(body["last_error"]) is str and body["last_error"] == "cannot reach the broker"
    assert cli.main(["--config", str(path), "sync-status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["list_error"] == english + "version 1 stays in use"
    assert info["list_state"] == "rejected: " + info["list_error"]
    assert cli.main(["--config", str(path), "sync-status"]) == 0
    out = capsys.readouterr().out
    assert "list error " + english + "version 1 stays in use" in out
    assert "(agent running; cannot reach the broker)" in out
    assert cli.main(["--config", str(path), "sync-status", "--lang", "ru"]) == 0
    out = capsys.readouterr().out
    assert ("ошибка списка подписан ключом 'rogue'" in out and "[unknown_key]; используется версия 1" in out
            and "список кодов отклонён: подписан ключом 'rogue'" in out), out
    assert "брокер недоступен" in out
    assert "signed with" not in out and "stays in use" not in out and "rejected" not in out


def test_import_child_hands_its_words_over_as_msg_json(device_cfg, tmp_path):
    """`python -m sync.list_import` prints the English text and the same words as Msg
    JSON, so a refusal made in the child is shown in Russian too."""
    from kiosk.i18n import Msg
    from sync import list_import

    path, ledger = device_cfg
    ledger.store.close()
    rogue, _pub = make_signing_key(tmp_path / "rogue")
    forged = make_bundle(tmp_path / "forged", rogue, key_id="rogue", program="p", version=2,
                         codes=["BETA0001"])
    result = list_import.run(str(path), str(forged))
    assert result["state"] == "rejected" and result["reason"] == "unknown_key"
    words = Msg.from_json(json.loads(json.dumps(result["msg"])))
    assert str(words) == result["message"] and result["message"].startswith("signed with key 'rogue'")
    assert words.render("ru").startswith("подписан ключом 'rogue'") and "[unknown_key]" in words.render("ru")


def test_sync_state_keeps_a_msg_only_while_its_text_stands(device_cfg):
    """A plain text written after a Msg replaces it: no stale translation is shown."""
    from kiosk.i18n import Msg, say

    _path, ledger = device_cfg
    syncstate.write_status(ledger.store, last_error=Msg("cannot reach the broker"))
    assert say(syncstate.read_status(ledger.store)["last_error"], "kk") == "брокерге қосылу мүмкін емес"
    syncstate.write_status(ledger.store, last_error="TLS: bad CA")
    assert say(syncstate.read_status(ledger.store)["last_error"], "kk") == "TLS: bad CA"
    syncstate.write_status(ledger.store, last_error=None)
    assert syncstate.read_status(ledger.store)["last_error"] is None
    assert ledger.store.get_meta("sync.last_error.msg") is None


def test_kiosk_sync_reports_config_errors(device_cfg, capsys):
    path, _ledger = device_cfg
    assert agent_cli.main(["--config", str(path)]) == 2
    assert "[mqtt] broker" in capsys.readouterr().err
    with open(path, "a") as fh:
        fh.write('[mqtt]\nbroker = "http://nowhere"\n')
    assert agent_cli.main(["--config", str(path)]) == 2
    assert "mqtts://" in capsys.readouterr().err
