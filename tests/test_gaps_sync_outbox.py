"""The outbox keeps every event HQ has not acknowledged by id.

An ack names the events HQ stored; only those may leave the outbox. Events sent in the
same window but not named (HQ stored a batch but its ack for the next one was lost)
must stay and be sent again after a reset. Real ledger and SQLite; the publish side
is a list, because this is about what the sender deletes, not about MQTT."""

import pytest

from sync.outbox import OutboxSender

CODES = ["OUTB-0001", "OUTB-0002", "OUTB-0003", "OUTB-0004"]


@pytest.fixture
def redeemed(hq, device):
    assert device.import_(hq.bundle(CODES, 1)).rc == 0
    ledger = device.ledger()
    for code in CODES:
        assert ledger.confirm(code).verdict == "redeemed"
    yield ledger
    ledger.store.close()


def test_ack_deletes_only_the_named_events(redeemed):
    sent: list[list[dict]] = []
    sender = OutboxSender(redeemed, sent.append, batch_size=2, window=4)
    assert sender.pump(now=0.0) == 4
    ids = [e["id"] for batch in sent for e in batch]
    assert len(ids) == 4

    assert sender.on_ack(ids[:2]) == 2
    assert redeemed.outbox_depth() == 2
    assert [e["id"] for e in redeemed.pending_events(10)] == ids[2:]

    # the ack of the second batch never came: after a reset exactly those are resent
    sent.clear()
    sender.reset()
    assert sender.pump(now=1.0) == 2
    assert [e["id"] for batch in sent for e in batch] == ids[2:]


def test_ack_of_unknown_ids_deletes_nothing(redeemed):
    sender = OutboxSender(redeemed, lambda events: None, batch_size=10)
    sender.pump(now=0.0)
    assert sender.on_ack(["00000000-0000-7000-8000-000000000000"]) == 0
    assert redeemed.outbox_depth() == len(CODES)
