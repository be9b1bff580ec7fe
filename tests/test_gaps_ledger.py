"""A long-lived ledger sees what other connections commit.

The UI keeps one ledger open for days while the sync agent (another process)
installs code lists. The ledger caches the current list; that cache must follow
commits made elsewhere, or a kiosk that booted without a list would answer
"no list" for ever, and a new list's rewards and version would never show."""

import pytest

from kiosk.core.verdict import Verdict


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
