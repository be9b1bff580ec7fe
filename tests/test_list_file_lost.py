"""A code list file lost or damaged on the card (a bad sector, a restore without it)
must not stop the kiosk from sending and acking what it recorded: verdicts say there
is no list (nothing can be verified), the outbox and the clock keep working."""

from kiosk.core import codelist
from kiosk.core.verdict import Verdict


def test_a_lost_list_file_means_no_list_not_a_stuck_outbox(device, hq):
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)).rc == 0
    ledger = device.ledger()
    try:
        done = ledger.confirm("AAAA-1111")
        assert done.redemption_id and ledger.outbox_depth() == 1
        have = ledger.store.current_list()
        (codelist.list_dir(ledger.store.path) / have.snapshot_file).unlink()
        ledger.store.close()
        ledger = device.ledger()  # the kiosk restarts (or the sync agent starts)
        assert ledger.check("BBBB-2222").verdict is Verdict.NO_LIST
        assert ledger.list_problem and have.snapshot_file in ledger.list_problem
        ids = [e["id"] for e in ledger.pending_events()]
        assert ledger.ack(ids) == 1 and ledger.outbox_depth() == 0  # HQ's ack still lands
    finally:
        ledger.store.close()
