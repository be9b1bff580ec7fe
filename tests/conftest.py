"""Shared fixtures: an HQ key pair, a device config and its ledger (all in tmp_path).

Builders live in tests/helpers.py so test files can also call them directly.
"""

import pytest
from helpers import Hq, make_device  # tests/ is on the path: pyproject's pythonpath

from kiosk.hardware import escpos_setup

escpos_setup.prepare()  # the suite is an entry point: before python-escpos is imported


@pytest.fixture
def hq(tmp_path):
    """An HQ with a fresh Ed25519 key pair made by ``kiosk-hq keygen``."""
    h = Hq(tmp_path / "hq")
    run = h.keygen()
    assert run.rc == 0, run.err
    return h


@pytest.fixture
def device(tmp_path, hq):
    """A device trusting ``hq``'s key: config TOML with data_dir and [trust.keys]."""
    return make_device(tmp_path / "device", hq)


@pytest.fixture
def ledger(device):
    led = device.ledger()
    yield led
    led.store.close()
