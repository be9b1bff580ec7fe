"""Verdict rule edges the other suites do not pin down: the exact validity boundaries
(``valid_from`` is inclusive, ``valid_until`` is exclusive) and which refusal wins
when a code is both revoked and limited to another store.

The codes go through a real signed bundle and import; the ledger reads a FixedClock
set to the boundary instant, so the decision is checked where it matters."""

from datetime import UTC, datetime, timedelta

import pytest

from kiosk.core import timefmt
from kiosk.core.clock import FixedClock
from kiosk.core.verdict import Verdict

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
END = datetime(2026, 3, 31, 21, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture
def listed(hq, device):
    codes = [
        {"code": "WIND-0001", "valid_from": timefmt.format(START), "valid_until": timefmt.format(END)},
        {"code": "ELSE-0002", "stores": "other-store"},
        {"code": "ELSE-0003", "stores": "other-store"},
    ]
    header = ("code", "reward_id", "valid_from", "valid_until", "stores")
    run = device.import_(hq.bundle(codes, 1, header=header))
    assert run.rc == 0, run.err
    # HQ then revokes the other store's code: the row keeps its store limit, marked revoked
    run = device.import_(hq.bundle([{"code": "ELSE-0003", "op": "revoke"}], 2, base=1,
                                   header=("code", "reward_id", "op")))
    assert run.rc == 0, run.err
    return device


def verdict_at(device, code: str, at: datetime) -> Verdict:
    ledger = device.ledger(clock=FixedClock(at))
    try:
        return ledger.check(code).verdict
    finally:
        ledger.store.close()


def test_valid_until_is_exclusive(listed):
    assert verdict_at(listed, "WIND-0001", END - SECOND) is Verdict.READY
    assert verdict_at(listed, "WIND-0001", END) is Verdict.EXPIRED


def test_valid_from_is_inclusive(listed):
    assert verdict_at(listed, "WIND-0001", START - SECOND) is Verdict.NOT_YET_VALID
    assert verdict_at(listed, "WIND-0001", START) is Verdict.READY


def test_confirm_at_the_expiry_instant_records_nothing(listed):
    ledger = listed.ledger(clock=FixedClock(END))
    try:
        assert ledger.confirm("WIND-0001").verdict is Verdict.EXPIRED
        assert ledger.outbox_depth() == 0
    finally:
        ledger.store.close()


def test_revoked_wins_over_wrong_store(listed):
    now = datetime.now(UTC)
    assert verdict_at(listed, "ELSE-0002", now) is Verdict.WRONG_STORE
    # revoked everywhere: staff must not send the customer to another store
    assert verdict_at(listed, "ELSE-0003", now) is Verdict.REVOKED
