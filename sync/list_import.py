"""``python -m sync.list_import CONFIG FOLDER``: import a received list, print the outcome.

The sync agent runs each import of a list received over MQTT in this short-lived
child process: the import's working set (batches of 20,000 records, SQLite cache)
then never inflates the long-running agent, and a crash here cannot take the agent
down. The work is exactly ``kiosk codes import``'s:
:func:`kiosk.core.importer.import_bundle` over a :class:`kiosk.core.bundle.DirSource`.
Prints one JSON line: ``{"state": "installed"|"rejected", "message", "msg", "reason",
"version"}``: ``message`` is the English text, ``msg`` the same words as
:meth:`kiosk.i18n.Msg.to_json` (for the technician's language).
"""

import json
import sys
from pathlib import Path


def run(config_path: str, folder: str) -> dict:
    from kiosk import config, context
    from kiosk.core import bundle, importer
    from kiosk.errors import BundleError, KioskError
    from kiosk.i18n import Msg

    cfg = config.load(Path(config_path))
    ledger = context.open_ledger(cfg)
    try:
        done = importer.import_bundle(ledger.store, bundle.DirSource(Path(folder)),
                                      cfg.trusted_keys, cfg.program, now=ledger.clock.read())
        return {"state": "installed", "version": done.version, "reason": None,
                **_words(Msg("installed version {version} ({count:,} records)",
                             version=done.version, count=done.record_count))}
    except BundleError as exc:
        return {"state": "rejected", "reason": exc.reason, "version": None,
                **_words(Msg("{error} [{reason}]", error=exc, reason=exc.reason))}
    except (KioskError, OSError) as exc:
        return {"state": "rejected", "reason": "import_failed", "version": None,
                **_words(Msg("import failed: {error}", error=exc))}
    finally:
        ledger.store.close()


def _words(msg) -> dict:
    return {"message": str(msg), "msg": msg.to_json()}


def main(argv: list[str]) -> int:
    from sync.agent_cli import skip_optional_numpy

    skip_optional_numpy()
    print(json.dumps(run(argv[0], argv[1])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
