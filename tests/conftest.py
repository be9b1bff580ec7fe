"""Shared fixtures: an HQ key pair, a device config and its ledger (all in tmp_path).

Builders live in tests/helpers.py so test files can also call them directly.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Hq, make_device  # noqa: E402


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
