"""A full data partition, for real: the kiosk's data folder on a small tmpfs that is
filled to the last byte (issue 11; docs/security.md).

A confirm on a full disk must fail with one clear line - on screen in the kiosk's four
languages, on the command line - record nothing half-way, lose nothing recorded before,
and the kiosk must work again by itself (same process, same connection) once there is
room. Mounting needs root; without it the test is skipped.
"""

import os
import sqlite3
import subprocess
import uuid
from contextlib import contextmanager

import pytest
from helpers import make_device

from kiosk.core.ledger import outbox_depth
from kiosk.errors import DiskFullError
from kiosk.ui import controller as c
from kiosk.ui.i18n import LANGUAGES, tr
from kiosk.ui.settings import UiSettings
from sync.testing import Broker, Estate, make_signing_key, wait_until

FULL_MSGID = "Not recorded: storage is full. Nothing was redeemed; call a technician."
CODES = [f"FULL-{i:04d}" for i in range(120)]


@contextmanager
def tmpfs(path, size: str = "3m"):
    """A small tmpfs mounted at ``path`` (a data partition of its own)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    name = f"kiosk-full-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", name, str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def partition(tmp_path):
    with tmpfs(tmp_path / "data-partition") as mnt:
        yield mnt


def fill(mnt):
    """Write a filler file until the partition refuses another byte."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(mnt).f_bavail == 0
    return filler


def local_ids(db) -> set:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM redemptions WHERE origin = 'local'")}
    finally:
        conn.close()


def test_confirm_on_a_full_partition_fails_clearly_loses_nothing_and_recovers(hq, partition):
    dev = make_device(partition / "kiosk", hq)
    assert dev.import_(hq.bundle(CODES)).rc == 0
    ledger = dev.ledger()
    db = dev.config().data_dir / "kiosk.sqlite"
    controller = c.Controller(ledger, settings=UiSettings(refusal_timeout=5, verdict_timeout=10,
                                                         done_timeout=3))
    codes = iter(CODES)

    def scan_and_confirm(lang: str):
        code = next(codes)
        controller.go_idle()
        controller.set_language(lang, staff=True)
        assert controller.scan(code, source="keyboard") and controller.screen == c.VERDICT, code
        assert controller.confirm(source="button")
        return code

    before = [scan_and_confirm("en") for _ in range(3)]
    assert controller.screen == c.DONE and outbox_depth(ledger.store) == 3
    recorded = local_ids(db)
    filler = fill(partition)

    # Full: every language shows the one-line message; a WAL that still has room may
    # take a confirm or two first (recorded whole), so each language tries a few codes.
    refused = {}
    for lang in LANGUAGES:
        for _ in range(20):
            code = scan_and_confirm(lang)
            if controller.screen == c.VERDICT:
                refused[lang] = code
                break
            recorded = local_ids(db)  # it went through: it is in the database, whole
            assert controller.screen == c.DONE and controller.redeemed.redemption_id in recorded
        else:
            pytest.fail(f"20 confirms on a full disk went through ({lang})")
        message = controller.record_error
        assert message == tr(FULL_MSGID, lang) and "\n" not in message, message
        assert controller.view() is not None  # the verdict screen can still be drawn
        if lang != "en":
            assert message != FULL_MSGID, f"{lang}: the message is not translated"
    for code in refused.values():  # nothing redeemed half-way: still ready, not in the DB
        assert ledger.check(code).verdict.value == "ready", code
    assert local_ids(db) == recorded and outbox_depth(ledger.store) == len(recorded)
    for code in before:
        assert ledger.check(code).verdict.value == "already_redeemed"

    # The command line says it in one line, exit 1, and records nothing either.
    cli = dev.run("redeem", refused["en"], "--confirm")
    assert cli.rc == 1 and len(cli.err.strip().splitlines()) == 1, cli.err
    assert "disk is full" in cli.err and "free space" in cli.err and "Traceback" not in cli.err
    with pytest.raises(DiskFullError):  # also a sqlite3.Error for older callers
        ledger.confirm(refused["uz"])

    # Room again: the same controller and connection confirm, nothing restarted.
    filler.unlink()
    for lang in LANGUAGES:
        controller.go_idle()
        controller.set_language(lang, staff=True)
        assert controller.scan(refused[lang], source="keyboard")
        assert controller.confirm(source="button") and controller.screen == c.DONE, lang
        assert controller.record_error == ""
    assert len(local_ids(db)) == len(recorded) + 4 == outbox_depth(ledger.store)
    assert dev.run("redeem", next(codes), "--confirm").rc == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    ledger.store.close()


def test_sync_agent_on_a_full_partition_keeps_running_and_sends_everything_once(tmp_path):
    """The agent (re)started while the disk is full must not die at its first status
    write; it sends the outbox, and once there is room the acks empty it."""
    data = tmp_path / "estate" / "k1" / "data"
    with tmpfs(data), Broker(tmp_path / "broker") as broker:
        estate = Estate(tmp_path / "estate", broker, make_signing_key(tmp_path / "keys"))
        try:
            k1 = estate.ledgers["k1"]
            ids = {k1.confirm(f"C{i:04d}").redemption_id for i in range(3)}
            filler = fill(data)
            agent = estate.agent_process("k1")
            log = tmp_path / "estate" / "k1-agent.log"
            wait_until(lambda: agent.poll() is not None
                       or "could not record the sync status" in log.read_text(), 60,
                       what="the agent started on the full disk")
            hq_db = tmp_path / "hq.sqlite"
            estate.collector(hq_db)

            def at_hq():
                conn = sqlite3.connect(hq_db)
                try:
                    return [r[0] for r in conn.execute("SELECT id FROM events WHERE device = 'k1'")]
                finally:
                    conn.close()

            wait_until(lambda: agent.poll() is not None or set(at_hq()) == ids, 60,
                       what="k1's events at HQ while its disk is full")
            assert agent.poll() is None, log.read_text()[-2000:]
            assert k1.outbox_depth() == 3  # the acks could not be written yet: nothing lost
            filler.unlink()
            wait_until(lambda: k1.outbox_depth() == 0, 60, what="outbox emptied once freed")
            assert sorted(at_hq()) == sorted(ids) and agent.poll() is None
            assert "Traceback" not in log.read_text()
        finally:
            estate.close()
