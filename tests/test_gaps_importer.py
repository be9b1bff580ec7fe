"""An import re-checks the installed version inside its final transaction.

``import_bundle`` checks the bundle's version before it takes the import lock, then
streams records for a while (minutes for a million codes). If another import (the
CLI and the sync agent may start one at the same moment) takes the lock first and
installs a newer list, the waiting import must refuse at its swap instead of
replacing the newer list with an older one (a rollback) or merging a delta onto the
wrong base. The race is made deterministic: the other import runs exactly between
the first check and the lock (when ``import_bundle`` asks the store for its path)."""

import base64

import pytest

from kiosk.core import importer
from kiosk.core.bundle import DirSource
from kiosk.core.store import Store
from kiosk.errors import BundleError


class RaceAtLock:
    """Stands in for ``Store.path``: the first lock-file lookup runs ``racer`` first."""

    def __init__(self, path, racer):
        self.path, self.racer, self.name = path, racer, path.name

    def with_name(self, name):
        racer, self.racer = self.racer, None
        if racer:
            racer()
        return self.path.with_name(name)


def import_racing_a_newer_list(device, first, racer_bundle):
    """Import ``first`` while another import installs ``racer_bundle`` just before it."""
    cfg = device.config()
    nested = []

    def racer():
        other = Store.in_dir(cfg.data_dir)
        try:
            nested.append(importer.import_bundle(other, DirSource(racer_bundle),
                                                 cfg.trusted_keys, cfg.program))
        finally:
            other.close()

    store = Store.in_dir(cfg.data_dir)
    store.path = RaceAtLock(store.path, racer)
    try:
        with pytest.raises(BundleError) as err:
            importer.import_bundle(store, DirSource(first), cfg.trusted_keys, cfg.program)
    finally:
        store.close()
    assert nested and nested[0].version == 3
    return err.value


def test_newer_list_installed_during_staging_is_not_rolled_back(hq, device):
    assert device.import_(hq.bundle(["BASE-0001"], 1)).rc == 0
    older = hq.bundle(["OLD2-0001", "OLD2-0002"], 2)
    newer = hq.bundle(["NEW3-0001", "NEW3-0002", "NEW3-0003"], 3)
    assert import_racing_a_newer_list(device, older, newer).reason == "rollback"
    assert device.version() == 3
    assert device.verdict("NEW3-0003")["verdict"] == "ready"
    assert device.verdict("OLD2-0001")["verdict"] == "unknown"


def test_delta_whose_base_was_replaced_during_staging_is_not_applied(hq, device):
    assert device.import_(hq.bundle(["BASE-0001", "BASE-0002"], 1)).rc == 0
    delta = hq.bundle([{"code": "BASE-0002", "op": "revoke"}, {"code": "DLT2-0001", "op": "put"}],
                      2, base=1, header=("code", "reward_id", "op"))
    newer = hq.bundle(["BASE-0001", "BASE-0002", "NEW3-0001"], 3)
    assert import_racing_a_newer_list(device, delta, newer).reason in ("rollback", "wrong_base")
    assert device.version() == 3
    assert device.verdict("BASE-0002")["verdict"] == "ready"
    assert device.verdict("DLT2-0001")["verdict"] == "unknown"


def test_delta_with_another_code_salt_is_rejected(hq, device, tmp_path):
    assert device.import_(hq.bundle(["SALT-0001", "SALT-0002"], 1)).rc == 0
    other_salt = tmp_path / "other.salt"
    other_salt.write_text(base64.b64encode(b"another-salt-of-32-bytes-length!").decode())
    delta = hq.bundle([{"code": "SALT-0003", "op": "put"}], 2, base=1,
                      header=("code", "reward_id", "op"), extra=["--salt-file", other_salt])
    run = device.import_(delta)
    assert run.rc == 1
    assert "code_salt" in run.err + run.out
    # the base list stays, and its codes still hash the way they did
    assert device.version() == 1
    assert device.verdict("SALT-0002")["verdict"] == "ready"
    assert device.verdict("SALT-0003")["verdict"] == "unknown"
