"""Swap a kiosk's SD card: `kiosk backup` on the old card, `kiosk restore` on the new one.

A full swap over a real mosquitto (TLS, shipped ACL) with a real HQ collector: the old
device sends one redemption, then loses its network with three events pending; the
backup moves identity, credentials, ledger and outbox to a blank card; the new card
sends the pending events, and HQ's database holds every event exactly once.
"""

import grp
import os
import shutil
import uuid
from pathlib import Path

import pytest
import tomli_w
from helpers import run_main

from kiosk import cli, config, context
from kiosk.commands import backup as backup_cmd
from kiosk.core import backup
from kiosk.core.verdict import Verdict
from sync.testing import Broker, hq_settings, make_bundle, make_signing_key, wait_until

GROUP = grp.getgrgid(os.getgid()).gr_name
PASSPHRASE = "correct horse battery staple"
CODES = [f"SWAP-{i:04d}" for i in range(10)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        hq_settings(b)
        yield b


def enrolled_device(folder, broker, program, store, device, pub):
    """A device laid out as `kiosk-hq enroll` + first boot leave it: relative paths."""
    folder.mkdir(parents=True)
    shutil.copyfile(broker.add_device(program, store, device), folder / "mqtt-password")
    shutil.copyfile(broker.pki["ca"], folder / "mqtt-ca.pem")
    (folder / "keys").mkdir()
    shutil.copyfile(pub, folder / "keys" / "hq1.pub.pem")
    data = {"device": {"id": device, "store": store, "program": program, "data_dir": "data"},
            "trust": {"keys": {"hq1": "keys/hq1.pub.pem"}},
            "mqtt": {"broker": broker.url, "ca": "mqtt-ca.pem", "username": device,
                     "password_file": "mqtt-password", "heartbeat_seconds": 2,
                     "ack_timeout_seconds": 3, "reconnect_max_seconds": 2, "poll_seconds": 0.1}}
    (folder / "kiosk.toml").write_text(tomli_w.dumps(data))
    return folder / "kiosk.toml"


def kiosk(cfg_path, *argv):
    return run_main(cli.main, ["--config", cfg_path, *argv])


def test_full_swap_with_pending_redemptions_reaches_hq_exactly_once(tmp_path, broker, running):
    program = f"p{uuid.uuid4().hex[:8]}"
    key, pub = make_signing_key(tmp_path / "hq")
    old = enrolled_device(tmp_path / "old" / "etc-kiosk", broker, program, "s1", "k1", pub)
    bundle = make_bundle(tmp_path / "bundle", key, key_id="hq1", program=program, version=1,
                         codes=CODES)
    assert kiosk(old, "codes", "import", bundle).rc == 0
    collector = running.collector(broker, tmp_path / "hq.sqlite", program)

    # The old card sends one redemption while it has a network ...
    ledger = context.open_ledger(config.load(old))
    agent = running.agent(old)
    first = ledger.confirm(CODES[0]).redemption_id
    wait_until(lambda: ledger.outbox_depth() == 0, 30, what="first redemption acked")
    running.halt(agent)
    # ... then loses it: two redemptions and an undo stay in its outbox.
    pending = [ledger.confirm(CODES[1]).redemption_id, ledger.confirm(CODES[2]).redemption_id]
    pending.append(ledger.void(pending[1])["id"])
    assert ledger.outbox_depth() == 3
    ledger.store.close()

    stick = tmp_path / "usb-stick"
    stick.mkdir()
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    run = kiosk(old, "backup", "--to", stick, "--passphrase-file", tmp_path / "passphrase")
    assert run.rc == 0, run.err
    assert "3 not yet sent to HQ" in run.out and "read back and checked" in run.out
    [file] = stick.glob("kiosk-backup-k1-*.kbk")
    blob = file.read_bytes()
    # A lost stick leaks no credential: neither the broker password nor the CA in clear.
    password = (old.parent / "mqtt-password").read_text().strip()
    assert password.encode() not in blob and b"BEGIN CERTIFICATE" not in blob
    assert b"SQLite format" not in blob and b"hq1.pub.pem" not in blob

    # The new card: blank, nothing provisioned.
    new = tmp_path / "new" / "etc-kiosk" / "kiosk.toml"
    run = kiosk(new, "restore", stick, "--passphrase-file", tmp_path / "passphrase",
                "--group", GROUP, "--json")
    assert run.rc == 0, run.err
    result = run.json()
    assert (result["device"], result["pending"]) == ("k1", 3)
    cfg = config.load(new)
    assert cfg.device_id == "k1" and cfg.data_dir == new.parent / "data"
    assert (new.parent / "mqtt-password").read_text().strip() == password
    assert oct((new.parent / "mqtt-password").stat().st_mode & 0o777) == "0o640"

    agent = running.agent(new)
    ledger = context.open_ledger(cfg)
    wait_until(lambda: ledger.outbox_depth() == 0, 30, what="restored outbox acked")
    rows = collector.db.rows("SELECT id, count(*) AS n FROM events WHERE device = 'k1' GROUP BY id")
    assert {r["id"]: r["n"] for r in rows} == {i: 1 for i in [first, *pending]}
    # The history came along: codes redeemed on the old card are refused here.
    assert ledger.check(CODES[0]).verdict is Verdict.ALREADY_REDEEMED
    assert ledger.check(CODES[1]).verdict is Verdict.ALREADY_REDEEMED
    assert ledger.check(CODES[2]).verdict is Verdict.READY  # its undo came along too

    # The new card is now past the backup: HQ acked its events; restoring is refused.
    agent.stop()
    run = kiosk(new, "restore", stick, "--passphrase-file", tmp_path / "passphrase",
                "--group", GROUP)
    assert run.rc == 1 and "[newer_here]" in run.err and "already sent 3" in run.err
    # So it is once the new card has recorded something of its own.
    newer = ledger.confirm(CODES[3]).redemption_id
    ledger.store.close()
    run = kiosk(new, "restore", stick, "--passphrase-file", tmp_path / "passphrase",
                "--group", GROUP)
    assert run.rc == 1 and "[newer_here]" in run.err and "Nothing was changed" in run.err
    assert "1 redemption event(s) the backup does not" in run.err
    ledger = context.open_ledger(config.load(new))
    assert [r["id"] for r in ledger.history() if r["id"] == newer] == [newer]
    ledger.store.close()


@pytest.fixture
def backed_up(tmp_path, hq, device, ledger, monkeypatch):
    """A plain device with one pending redemption, backed up to a stick."""
    assert device.import_(hq.bundle(["BK-0001", "BK-0002"])).rc == 0
    ledger.confirm("BK-0001")
    stick = tmp_path / "stick"
    stick.mkdir()
    monkeypatch.setenv(backup_cmd.PASSPHRASE_ENV, PASSPHRASE)
    run = device.run("backup", "--to", stick)
    monkeypatch.delenv(backup_cmd.PASSPHRASE_ENV)
    assert run.rc == 0, run.err
    return stick, next(stick.glob("*.kbk"))


def test_wrong_passphrase_and_damaged_files_are_refused_and_change_nothing(tmp_path, backed_up):
    stick, file = backed_up
    target = tmp_path / "new" / "kiosk.toml"
    (tmp_path / "wrong").write_text("not the passphrase at all\n")
    run = kiosk(target, "restore", stick, "--passphrase-file", tmp_path / "wrong", "--group", GROUP)
    assert run.rc == 1 and "[wrong_passphrase]" in run.err
    assert not target.parent.exists()
    (tmp_path / "right").write_text(PASSPHRASE)
    for name, damage in (("cut.kbk", lambda b: b[:-20]), ("flip.kbk", lambda b: b[:-40] + bytes(
            [b[-40] ^ 1]) + b[-39:])):
        bad = tmp_path / name
        bad.write_bytes(damage(file.read_bytes()))
        run = kiosk(target, "restore", bad, "--passphrase-file", tmp_path / "right", "--group", GROUP)
        assert run.rc == 1 and "[damaged]" in run.err, (name, run.err)
        assert not target.parent.exists()
    header = backup.read_header(file)[0]
    assert header["pending"] == 1 and header["kdf"]["name"] == "scrypt"


def test_backup_needs_a_real_passphrase_and_a_mounted_stick(tmp_path, device, ledger):
    (tmp_path / "short").write_text("1234\n")
    run = device.run("backup", "--to", tmp_path, "--passphrase-file", tmp_path / "short")
    assert run.rc == 1 and "[weak_passphrase]" in run.err
    (tmp_path / "pf").write_text(PASSPHRASE)
    run = device.run("backup", "--to", tmp_path / "not-mounted", "--passphrase-file", tmp_path / "pf")
    assert run.rc == 1 and "[no_target]" in run.err
    run = device.run("backup", "--to", tmp_path / "not-mounted", "--passphrase-file", tmp_path / "pf",
                     "--lang", "ru")
    assert run.rc == 1 and "[no_target]" in run.err and "не папка" in run.err and "not a folder" not in run.err
    run = device.run("backup", "--to", tmp_path, "--passphrase-file", tmp_path / "short", "--lang", "uz")
    assert "[weak_passphrase]" in run.err and "kamida" in run.err and "at least" not in run.err


def test_a_backup_larger_than_one_chunk_round_trips_and_a_missing_last_chunk_is_caught(
        tmp_path, device, ledger):
    big = os.urandom(3 << 20).hex()  # about 3 MiB after compression: several chunks
    with ledger.store.transaction() as tx:
        tx.execute("INSERT INTO meta (key, value) VALUES ('filler', ?)", (big,))
    cfg = device.config()
    source = backup.Source(cfg.path, [], cfg.data_dir / "kiosk.sqlite", cfg.device_id,
                           cfg.store, cfg.program)
    stick = tmp_path / "stick"
    stick.mkdir()
    info = backup.write(source, stick, PASSPHRASE)
    assert info["bytes"] > 2 * backup.CHUNK
    out = tmp_path / "unpacked"
    backup.unpack(Path(info["path"]), PASSPHRASE, out)
    import sqlite3
    conn = sqlite3.connect(out / "data" / "kiosk.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key = 'filler'").fetchone()[0] == big
    conn.close()
    # Drop the whole last chunk: every remaining chunk verifies, yet the end is missing.
    blob = Path(info["path"]).read_bytes()
    _, raw, start = backup.read_header(Path(info["path"]))
    pos, ends = start, []
    while pos < len(blob):
        pos += 4 + int.from_bytes(blob[pos:pos + 4], "big")
        ends.append(pos)
    cut = tmp_path / "cut.kbk"
    cut.write_bytes(blob[:ends[-2]])
    with pytest.raises(backup.BackupError) as exc:
        backup.verify(cut, PASSPHRASE)
    assert exc.value.reason == "damaged" and "truncated" in str(exc.value)
