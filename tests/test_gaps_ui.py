"""UI controller: Cancel cannot abandon a confirm that is being recorded, and the
newest scan's verdict wins.

While the worker records a redemption the verdict screen must stay (staff see the
outcome of their tap); a Cancel tap then must not drop the kiosk to idle, where a
new scan could start while the first redemption is still being written. Without an
in-place checker, checks run on the worker and may finish out of order: a slow check
of an older scan must never replace the verdict of the card presented after it."""

import pytest
from helpers import ManualWorker

from kiosk import config, context
from kiosk.ui import controller as c
from kiosk.ui import demo
from kiosk.ui.settings import UiSettings


@pytest.fixture
def ctl(tmp_path):
    built = demo.build(tmp_path / "demo", cards=False)
    ledger = context.open_ledger(config.load(built.config))
    controller = c.Controller(ledger, settings=UiSettings(verdict_timeout=10, done_timeout=3),
                              now=lambda: 1000.0)
    controller.worker = controller.print_worker = ManualWorker()
    yield controller, built, ledger
    ledger.store.close()


def test_cancel_while_confirm_runs_is_ignored(ctl):
    controller, built, ledger = ctl
    controller.scan(built.payloads["ready-coffee"])
    controller.worker.run()
    assert controller.confirm(controller.token) is True
    controller.cancel()
    assert controller.screen == c.VERDICT and controller.confirming
    assert controller.scan(built.payloads["expired"]) is False
    controller.worker.run()
    assert controller.screen == c.DONE and not controller.confirming
    assert ledger.last_local_redemption() is not None


def test_cancel_on_a_verdict_goes_idle(ctl):
    controller, built, _ = ctl
    controller.scan(built.payloads["ready-coffee"])
    controller.worker.run()
    controller.cancel()
    assert controller.screen == c.IDLE and controller.result is None


def test_an_older_check_finishing_late_does_not_replace_the_newer_verdict(ctl):
    controller, built, _ = ctl
    assert controller.checker is None  # checks go through the worker
    controller.scan(built.payloads["ready-coffee"])
    controller.scan(built.payloads["expired"])
    older, newer = controller.worker.jobs
    controller.worker.jobs = [newer, older]  # the older check is the slow one
    controller.worker.run()
    assert controller.screen == c.VERDICT
    assert controller.result.verdict.value == "expired"
    assert controller.view().can_confirm is False
