"""Shared fixtures: an HQ key pair, a device config and its ledger (all in tmp_path).

Builders live in tests/helpers.py so test files can also call them directly.
"""

import uuid

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


@pytest.fixture(scope="module")
def pg():
    """A throwaway PostgreSQL cluster for the HQ tests of one module (sync/testing_pg.py:
    Debian's initdb in a temp folder on a free loopback port, never a shared server)."""
    from sync import testing_pg

    if not testing_pg.available():
        pytest.skip("PostgreSQL server binaries are not installed (scripts/system-deps.sh)")
    with testing_pg.Postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty HQ database: a SQLite file in tmp_path, or a new database in the module's
    throwaway PostgreSQL cluster (``pg``). A test for one kind only parametrizes it with
    ``indirect=True``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite'}"
    return request.getfixturevalue("pg").create_db(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def hq_db(db_url):
    """HQ's database layer (``sync.hq.db.HqDb``, migrated) on ``db_url``."""
    from sync.hq.db import HqDb

    db = HqDb(db_url)
    yield db
    db.close()


@pytest.fixture
def running():
    """Device agents and HQ collectors in threads, stopped at the end (sync.testing.Running)."""
    from sync.testing import Running

    r = Running()
    yield r
    r.close()
