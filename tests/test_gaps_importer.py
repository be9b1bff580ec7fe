"""A full import re-checks the installed version inside its swap transaction.

The import checks the bundle's version before staging, then streams records for a
while (minutes for a million codes). If a newer list got installed meanwhile (here:
the import lock file was removed, so a second import did not wait), the swap must
refuse instead of replacing the newer list with an older one (a rollback)."""

import pytest

from kiosk.core import importer
from kiosk.core.bundle import DirSource
from kiosk.core.store import Store
from kiosk.errors import BundleError


def test_newer_list_installed_during_staging_is_not_rolled_back(hq, device):
    cfg = device.config()
    assert device.import_(hq.bundle(["BASE-0001"], 1)).rc == 0
    older = hq.bundle(["OLD2-0001", "OLD2-0002"], 2)
    newer = hq.bundle(["NEW3-0001", "NEW3-0002", "NEW3-0003"], 3)

    store = Store.in_dir(cfg.data_dir)
    lock = store.path.with_name(store.path.name + ".import-lock")
    nested = []

    def progress(done, total):
        if nested:
            return
        lock.unlink()  # a technician's cleanup: the next import gets a lock of its own
        other = Store.in_dir(cfg.data_dir)
        try:
            nested.append(importer.import_bundle(other, DirSource(newer), cfg.trusted_keys, cfg.program))
        finally:
            other.close()

    try:
        with pytest.raises(BundleError) as err:
            importer.import_bundle(store, DirSource(older), cfg.trusted_keys, cfg.program,
                                   progress=progress)
    finally:
        store.close()
    assert nested and nested[0].version == 3
    assert err.value.reason == "rollback"
    assert device.version() == 3
    assert device.verdict("NEW3-0003")["verdict"] == "ready"
    assert device.verdict("OLD2-0001")["verdict"] == "unknown"
