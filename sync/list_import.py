"""``python -m sync.list_import CONFIG FOLDER``: import a received list, print the outcome.

The sync agent runs each import of a list received over MQTT in this short-lived
child process: the import's working set (batches of 20,000 records, SQLite cache)
then never inflates the long-running agent, and a crash here cannot take the agent
down. The work is exactly ``kiosk codes import``'s:
:func:`kiosk.core.importer.import_bundle` over a :class:`kiosk.core.bundle.DirSource`.
Prints one JSON line: ``{"state": "installed"|"rejected", "message", "reason", "version"}``.
"""

import json
import sys
from pathlib import Path


def run(config_path: str, folder: str) -> dict:
    from kiosk import config, context
    from kiosk.core import bundle, importer
    from kiosk.errors import BundleError, KioskError

    cfg = config.load(Path(config_path))
    ledger = context.open_ledger(cfg)
    try:
        done = importer.import_bundle(ledger.store, bundle.DirSource(Path(folder)),
                                      cfg.trusted_keys, cfg.program, now=ledger.clock.read())
        return {"state": "installed", "version": done.version, "reason": None,
                "message": f"installed version {done.version} ({done.record_count:,} records)"}
    except BundleError as exc:
        return {"state": "rejected", "reason": exc.reason, "version": None,
                "message": f"{exc} [{exc.reason}]"}
    except (KioskError, OSError) as exc:
        return {"state": "rejected", "reason": "import_failed", "version": None,
                "message": f"import failed: {exc}"}
    finally:
        ledger.store.close()


def main(argv: list[str]) -> int:
    from sync.agent_cli import skip_optional_numpy

    skip_optional_numpy()
    print(json.dumps(run(argv[0], argv[1])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
