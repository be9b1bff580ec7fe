"""The redemption ledger: concurrency, void window, history, clock policy, outbox events."""

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import make_device

from kiosk import config, context
from kiosk.core import timefmt
from kiosk.core.clock import SOURCES, Clock, FixedClock
from kiosk.core.verdict import Verdict
from kiosk.errors import VoidError
from kiosk.i18n import say

N = 8
EVENT_FIELDS = {"id", "seq", "device", "store", "kind", "voids", "code_hash", "reward_id",
                "list_version", "at", "clock", "staff"}


@pytest.fixture
def listed(hq, device):
    codes = [{"code": "SOLO-0001"}, {"code": "TRIO-0003", "max_uses": "3"},
             {"code": "EARLY-0004", "valid_from": timefmt.format(datetime.now(UTC) - timedelta(days=1))}]
    assert device.import_(hq.bundle(codes, 1, header=("code", "reward_id", "max_uses",
                                                     "valid_from"))).rc == 0
    return device


def counts(ledger, code="SOLO-0001"):
    r = ledger.check(code)
    rows = ledger.store.conn.execute(
        "SELECT count(*) FROM redemptions WHERE code_hash = ? AND kind = 'redeem'",
        (r.code_hash,)).fetchone()[0]
    outbox = sum(1 for e in ledger.pending_events(1000) if e["code_hash"] == r.code_hash)
    return rows, outbox, r


# -- concurrency ---------------------------------------------------------------------------

def _confirm_in_process(cfg_path: str, code: str, barrier, results) -> None:
    ledger = context.open_ledger(config.load(Path(cfg_path)))
    barrier.wait(30)
    results.put(str(ledger.confirm(code).verdict))
    ledger.store.close()


def _race_processes(device, code: str) -> list[str]:
    ctx = multiprocessing.get_context("forkserver")  # fresh processes, no inherited sqlite
    ctx.set_forkserver_preload(["kiosk.context", "kiosk.config"])
    barrier, results = ctx.Barrier(N), ctx.Queue()
    procs = [ctx.Process(target=_confirm_in_process, args=(str(device.path), code, barrier, results))
             for _ in range(N)]
    for p in procs:
        p.start()
    verdicts = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return sorted(verdicts)


def test_processes_confirming_a_single_use_code_one_wins(listed):
    verdicts = _race_processes(listed, "SOLO-0001")
    assert verdicts.count("redeemed") == 1
    assert verdicts.count("already_redeemed") == N - 1
    ledger = listed.ledger()
    assert counts(ledger)[:2] == (1, 1)


def test_processes_on_a_three_use_code_get_exactly_three(listed):
    verdicts = _race_processes(listed, "TRIO-0003")
    assert verdicts.count("redeemed") == 3
    assert verdicts.count("exhausted") == N - 3
    rows, outbox, result = counts(listed.ledger(), "TRIO-0003")
    assert (rows, outbox, result.detail["uses"]) == (3, 3, 3)


@pytest.mark.parametrize("shared", [False, True], ids=["own-connection", "shared-ledger"])
def test_threads_confirming_a_single_use_code_one_wins(listed, shared):
    one = listed.ledger()
    ledgers = [one if shared else listed.ledger() for _ in range(N)]
    barrier, verdicts, errors = threading.Barrier(N), [], []

    def work(ledger):
        try:
            barrier.wait(30)
            verdicts.append(str(ledger.confirm("SOLO-0001").verdict))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(verdicts) == ["already_redeemed"] * (N - 1) + ["redeemed"]
    assert counts(one)[:2] == (1, 1)


def test_threads_sharing_one_ledger_take_turns(listed):
    """UI and sync threads share one Store: transactions must not interleave on it."""
    ledger, errors, verdicts = listed.ledger(), [], []

    def work():
        try:
            for _ in range(40):
                verdicts.append(str(ledger.confirm("TRIO-0003").verdict))
                ledger.check("SOLO-0001")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert verdicts.count("redeemed") == 3 and len(verdicts) == 160


# -- void and history -----------------------------------------------------------------------

class Wall:
    """A settable wall clock for Clock(wall=...)."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def test_void_within_window_then_double_void_refused(listed):
    ledger = listed.ledger()
    done = ledger.confirm("SOLO-0001", staff="ana")
    run = listed.run("void", done.redemption_id, "--json", "--staff", "bo")
    assert run.rc == 0
    event = run.json()["event"]
    assert event["kind"] == "void" and event["voids"] == done.redemption_id
    assert event["staff"] == "bo" and event["code_hash"] == done.code_hash
    assert ledger.check("SOLO-0001").verdict is Verdict.READY  # usable again
    again = listed.run("void", done.redemption_id)
    assert again.rc == 1 and "already undone" in again.out
    history = listed.run("history", "--json").json()
    assert {h["kind"] for h in history} == {"redeem", "void"}
    redeem = next(h for h in history if h["kind"] == "redeem")
    assert redeem["voided_by"] == event["id"]
    assert "VOIDED" in listed.run("history").out
    kinds = [e["kind"] for e in ledger.pending_events()]
    assert kinds == ["redeem", "void"]


def test_void_refused_after_window(listed):
    wall = Wall(datetime.now(UTC) + timedelta(minutes=1))
    ledger = listed.ledger(clock=Clock(wall=wall, synced_flag=None, rtc_device=None))
    done = ledger.confirm("SOLO-0001")
    assert done.verdict is Verdict.REDEEMED
    wall.at += timedelta(minutes=9, seconds=59)
    ledger.void(done.redemption_id)  # just inside the 10-minute window
    again = ledger.confirm("SOLO-0001")
    wall.at += timedelta(minutes=10, seconds=1)
    with pytest.raises(VoidError, match="older than the 10-minute undo window"):
        ledger.void(again.redemption_id)
    assert ledger.check("SOLO-0001").verdict is Verdict.ALREADY_REDEEMED


def test_void_window_comes_from_config(tmp_path, hq):
    dev = make_device(tmp_path / "d2", hq, extra="[redeem]\nvoid_window_minutes = 1\n")
    assert dev.import_(hq.bundle(["SOLO-0001"])).rc == 0
    wall = Wall(datetime.now(UTC) + timedelta(minutes=1))
    ledger = dev.ledger(clock=Clock(wall=wall, synced_flag=None, rtc_device=None))
    done = ledger.confirm("SOLO-0001")
    wall.at += timedelta(seconds=61)
    with pytest.raises(VoidError, match="1-minute undo window"):
        ledger.void(done.redemption_id)


def test_void_unknown_or_remote_redemption_refused(listed):
    ledger = listed.ledger()
    with pytest.raises(VoidError, match="no redemption"):
        ledger.void("0190aaaa-0000-7000-8000-000000000000")
    remote = {"id": str(uuid.uuid4()), "seq": 1, "device": "kiosk-2", "store": "s1",
              "kind": "redeem", "voids": None, "code_hash": ledger.check("SOLO-0001").code_hash,
              "reward_id": "coffee", "list_version": 1, "at": timefmt.format(datetime.now(UTC)),
              "clock": "synced", "staff": None}
    assert ledger.apply_remote(remote) is True
    assert ledger.apply_remote(remote) is False  # idempotent
    assert ledger.check("SOLO-0001").verdict is Verdict.ALREADY_REDEEMED
    with pytest.raises(VoidError, match="another device"):
        ledger.void(remote["id"])
    assert listed.run("void", remote["id"]).rc == 1


def remote_event(ledger, kind="redeem", voids=None, at=None, device="kiosk-2", code="SOLO-0001"):
    return {"id": str(uuid.uuid4()), "seq": 1, "device": device, "store": "s1", "kind": kind,
            "voids": voids, "code_hash": ledger.check(code).code_hash, "reward_id": "coffee",
            "list_version": 1, "at": timefmt.format(at or datetime.now(UTC)),
            "clock": "synced", "staff": None}


def test_remote_void_before_its_redeem_cancels_it(listed):
    """Fan-out order is not guaranteed: a void may arrive before the redemption it undoes."""
    ledger = listed.ledger()
    redeem = remote_event(ledger)
    void = remote_event(ledger, "void", voids=redeem["id"])
    assert ledger.apply_remote(void) is True
    assert ledger.check("SOLO-0001").verdict is Verdict.READY
    assert ledger.apply_remote(redeem) is True
    assert ledger.check("SOLO-0001").verdict is Verdict.READY
    row = next(h for h in ledger.history() if h["id"] == redeem["id"])
    assert row["voided_by"] == void["id"]


def test_remote_void_of_an_unknown_redemption_keeps_local_uses(listed):
    ledger = listed.ledger()
    assert ledger.confirm("SOLO-0001").verdict is Verdict.REDEEMED
    stray = remote_event(ledger, "void", voids=str(uuid.uuid4()))
    assert ledger.apply_remote(stray) is True
    assert ledger.check("SOLO-0001").verdict is Verdict.ALREADY_REDEEMED


def test_older_remote_use_does_not_overwrite_last_use(listed):
    ledger = listed.ledger()
    mine = ledger.confirm("TRIO-0003")
    old = remote_event(ledger, at=datetime.now(UTC) - timedelta(hours=1), code="TRIO-0003")
    ledger.apply_remote(old)
    detail = ledger.check("TRIO-0003").detail
    assert detail["uses"] == 2
    assert (detail["last_at"], detail["last_device"]) == (timefmt.format(mine.at), "kiosk-1")


def test_history_today_and_json(listed):
    ledger = listed.ledger()
    today = ledger.confirm("TRIO-0003", staff="ana")
    old_at = datetime.now(UTC) - timedelta(days=3)
    ledger.apply_remote({"id": str(uuid.uuid4()), "seq": 9, "device": "kiosk-2", "store": "s1",
                         "kind": "redeem", "voids": None, "code_hash": today.code_hash,
                         "reward_id": "coffee", "list_version": 1, "at": timefmt.format(old_at),
                         "clock": "rtc", "staff": None})
    everything = listed.run("history", "--json").json()
    assert [h["device"] for h in everything] == ["kiosk-1", "kiosk-2"]  # newest first
    todays = listed.run("history", "--today", "--json").json()
    assert [h["id"] for h in todays] == [today.redemption_id]
    assert todays[0]["staff"] == "ana" and todays[0]["masked_code"] == "0003"
    text = listed.run("history", "--today")
    assert text.rc == 0 and today.redemption_id in text.out and "(at kiosk-2)" not in text.out
    assert "(at kiosk-2)" in listed.run("history").out
    assert len(listed.run("history", "--json", "--limit", "1").json()) == 1


def test_history_empty(device):
    assert device.run("history", "--today").out.strip() == "no redemptions today"
    assert device.run("history", "--lang", "uz").out.strip() == "foydalanishlar yoʻq"


def test_void_and_history_speak_the_chosen_or_configured_language(listed):
    """kiosk void and kiosk history in Russian (--lang) and Kazakh (configured); the
    refusals (VoidError) too; --json keeps its English error."""
    done = listed.ledger().confirm("SOLO-0001", staff="ana")
    rid = done.redemption_id
    run = listed.run("void", rid, "--lang", "ru")
    assert run.rc == 0 and run.out.startswith(f"отменено: погашение {rid} (событие отмены "), run.out
    run = listed.run("void", rid, "--lang", "ru")
    assert run.rc == 1 and run.out.strip() == f"kiosk: отменить нельзя: погашение {rid} уже отменено"
    assert listed.run("void", rid, "--json", "--lang", "ru").json()["error"] == \
        f"redemption {rid} was already undone"
    text = listed.run("history", "--lang", "ru").out
    assert "ОТМЕНЕНО" in text and "погашение" in text and "отмена" in text and "VOIDED" not in text
    listed.path.write_text(listed.path.read_text().replace(
        "[trust.keys]", 'language = "kk"\n\n[trust.keys]'))
    assert "БОЛДЫРЫЛМАДЫ" in listed.run("history").out
    assert "VOIDED" in listed.run("history", "--lang", "en").out
    run = listed.run("void", "nope")
    assert run.rc == 1 and "болдырмау мүмкін емес: бұл құрылғыда nope пайдалануы жоқ" in run.out


def test_void_refusals_exist_in_every_language(listed):
    ledger = listed.ledger()
    wall = Wall(datetime.now(UTC) + timedelta(minutes=30))
    done = ledger.confirm("TRIO-0003")
    late = listed.ledger(clock=Clock(wall=wall, synced_flag=None, rtc_device=None))
    refusals = []
    for action in (lambda: ledger.void("nope"), lambda: late.void(done.redemption_id)):
        with pytest.raises(VoidError) as exc:
            action()
        refusals.append(exc.value)
    for exc in refusals:
        for lang in ("uz", "kk", "ru"):
            assert say(exc, lang) != str(exc) and "redemption" not in say(exc, lang)


# -- clock policy ----------------------------------------------------------------------------

def clock_device(tmp_path, hq, flag: bool, rtc: bool):
    flag_path, rtc_path = tmp_path / "synchronized", tmp_path / "rtc0"
    if flag:
        flag_path.touch()
    if rtc:  # an RTC that kept time, laid out like /sys/class/rtc/rtc0 (kiosk.core.clock)
        rtc_path.mkdir()
        (rtc_path / "since_epoch").write_text(f"{int(time.time())}\n")
    dev = make_device(tmp_path / "c", hq, extra=(
        f'[clock]\nsynced_flag = "{flag_path}"\nrtc_device = "{rtc_path}"\n'))
    assert dev.import_(hq.bundle(["SOLO-0001", "TWO-0002", "EARLY-0004"])).rc == 0
    return dev


@pytest.mark.parametrize("flag, rtc, source", [
    (True, True, "synced"), (True, False, "synced"), (False, True, "rtc"), (False, False, "unsynced"),
])
def test_clock_source_recorded_on_events(tmp_path, hq, flag, rtc, source):
    dev = clock_device(tmp_path, hq, flag, rtc)
    done = dev.ledger().confirm("SOLO-0001")
    assert done.clock == source
    assert dev.ledger().pending_events()[0]["clock"] == source
    assert dev.run("history", "--json").json()[0]["clock"] == source


def test_wall_clock_behind_newest_issued_at_uses_the_floor(tmp_path, hq):
    dev = clock_device(tmp_path, hq, flag=True, rtc=True)
    issued = timefmt.parse(dev.run("codes", "status", "--json").json()["issued_at"])
    wall = Wall(datetime(2001, 1, 1, tzinfo=UTC))  # a Pi booted without network or RTC battery
    clock = context.make_clock(dev.config())
    clock.wall = wall
    ledger = dev.ledger(clock=clock)
    reading = ledger.clock.read()
    assert reading.now == issued and reading.source == "unsynced" and reading.wall_behind_floor
    done = ledger.confirm("SOLO-0001")
    assert (done.at, done.clock) == (issued, "unsynced")
    # the floor is now the last redemption: still never earlier than that
    wall.at = issued + timedelta(minutes=5)
    second = ledger.confirm("TWO-0002")
    assert second.clock == "synced" and second.at == issued + timedelta(minutes=5)
    wall.at = issued + timedelta(minutes=1)
    assert ledger.clock.read().now == second.at
    assert ledger.clock.read().source == "unsynced"


def test_floor_prevents_a_stale_clock_from_refusing_a_valid_code(listed):
    """EARLY-0004 became valid yesterday; a clock stuck in 2001 must not say not_yet_valid."""
    wall = Wall(datetime(2001, 1, 1, tzinfo=UTC))
    ledger = listed.ledger(clock=Clock(wall=wall, synced_flag=None, rtc_device=None))
    result = ledger.check("EARLY-0004")
    assert result.verdict is Verdict.READY and result.clock == "unsynced"


def test_fixed_clock_decides_expiry(listed):
    later = datetime.now(UTC) + timedelta(days=400)
    ledger = listed.ledger(clock=FixedClock(later, source="rtc"))
    assert ledger.check("SOLO-0001").verdict is Verdict.READY
    earlier = listed.ledger(clock=FixedClock(datetime.now(UTC) - timedelta(days=2)))
    assert earlier.check("EARLY-0004").verdict is Verdict.NOT_YET_VALID


# -- outbox events -----------------------------------------------------------------------------

def test_events_carry_every_field_uuid7_and_increasing_seq(listed):
    ledger = listed.ledger()
    first = ledger.confirm("TRIO-0003", staff="ana")
    ledger.confirm("TRIO-0003")
    ledger.void(first.redemption_id, staff="bo")
    events = ledger.pending_events()
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["kind"] for e in events] == ["redeem", "redeem", "void"]
    for e in events:
        assert set(e) == EVENT_FIELDS
        u = uuid.UUID(e["id"])
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert (e["device"], e["store"], e["list_version"]) == ("kiosk-1", "s1", 1)
        assert e["clock"] in SOURCES and e["reward_id"] == "coffee"
        assert len(e["code_hash"]) == 64
        assert timefmt.format(timefmt.parse(e["at"])) == e["at"]
    assert events[0]["staff"] == "ana" and events[2]["voids"] == first.redemption_id
    assert events[0]["voids"] is None
    ids = [uuid.UUID(e["id"]).int >> 80 for e in events]  # 48-bit milliseconds
    assert ids == sorted(ids)
    assert ledger.ack([events[0]["id"]]) == 1
    assert ledger.outbox_depth() == 2
    assert [e["seq"] for e in ledger.pending_events()] == [2, 3]
    # seq keeps increasing after acks
    assert ledger.confirm("SOLO-0001").verdict is Verdict.REDEEMED
    assert ledger.pending_events()[-1]["seq"] == 4


def test_codes_are_stored_only_as_hashes(listed):
    db = (Path(listed.config().data_dir) / "kiosk.sqlite").read_bytes()
    assert b"SOLO" not in db and b"TRIO" not in db


def test_a_migration_with_a_trigger_applies_whole(tmp_path, monkeypatch):
    """Migrations are split where SQLite says a statement ends, so a trigger body's ';'
    does not cut it; the rows helper returns dicts by column name."""
    from kiosk.core import store as store_module

    trigger = ("CREATE TABLE meta_log (note TEXT);\n"
               "CREATE TRIGGER meta_logged AFTER INSERT ON meta BEGIN\n"
               "  INSERT INTO meta_log VALUES ('meta: ' || NEW.key);\n"
               "  INSERT INTO meta_log VALUES ('done; really');\n"
               "END;")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, ("9999_t", trigger)])
    db = store_module.Store(tmp_path / "kiosk.sqlite")
    with db.transaction() as tx:
        store_module.Store.set_meta(tx, "k", "v")
    assert db.rows("SELECT note FROM meta_log") == [{"note": "meta: k"}, {"note": "done; really"}]
    assert db.rows("SELECT name FROM migrations WHERE name = ?", ["9999_t"]) == [{"name": "9999_t"}]
    db.close()


# -- A long-lived ledger sees what other connections commit.
#
# The UI keeps one ledger open for days while the sync agent (another process)
# installs code lists. The ledger caches the current list; that cache must follow
# commits made elsewhere, or a kiosk that booted without a list would answer
# "no list" for ever, and a new list's rewards and version would never show.

@pytest.fixture
def long_lived(device):
    ledger = device.ledger()
    yield ledger
    ledger.store.close()


def test_first_list_imported_elsewhere_is_seen(hq, device, long_lived):
    assert long_lived.check("LIVE-0001").verdict is Verdict.NO_LIST
    assert device.import_(hq.bundle(["LIVE-0001"], 1)).rc == 0  # another connection
    result = long_lived.check("LIVE-0001")
    assert result.verdict is Verdict.READY
    assert result.title == "Free coffee"


def test_new_list_version_and_rewards_imported_elsewhere_are_seen(hq, device, long_lived):
    assert device.import_(hq.bundle(["LIVE-0002"], 1)).rc == 0
    assert long_lived.check("LIVE-0002").detail["list_version"] == 1
    assert device.import_(hq.bundle([{"code": "LIVE-0002", "reward_id": "ten"}], 2)).rc == 0
    result = long_lived.check("LIVE-0002")
    assert result.detail["list_version"] == 2
    assert result.reward_id == "ten" and result.title == "10% off"
    redeemed = long_lived.confirm("LIVE-0002")
    assert redeemed.verdict is Verdict.REDEEMED
    assert long_lived.pending_events(10)[0]["list_version"] == 2
