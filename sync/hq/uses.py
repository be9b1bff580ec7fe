"""Uses HQ knows, carried into a list signed with a new code salt (``--rotate-salt``).

Devices count uses per code hash, and a new salt changes every hash: without help a
device would forget which codes were redeemed. So a rotated snapshot's records carry
``uses``: the redemptions HQ has stored for the code under every earlier salt (redeems
not voided), looked up in the collector's database by the code's earlier hashes. The
earlier salts are kept in ``PROGRAM.salt.history`` beside the salt file. Devices switch
to such a list only when HQ had all of their redemptions before signing
(:func:`kiosk.core.importer.salt_wait`).
"""

import base64
import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from kiosk.core.codes import code_hash
from sync.hq.db import HqDb

_USES = ("SELECT count(*) FROM events WHERE program = ? AND code_hash = ? AND kind = 'redeem' "
         "AND voided_by IS NULL")


def history_path(salt_file: Path) -> Path:
    return Path(salt_file).with_name(Path(salt_file).name + ".history")


def earlier_salts(salt_file: Path) -> list[bytes]:
    """Every salt the program used before the current one, oldest first."""
    path = history_path(salt_file)
    if not path.exists():
        return []
    return [base64.b64decode(line) for line in path.read_text().split()]


def remember_salt(salt_file: Path, salt: bytes) -> None:
    """Add a salt that is being replaced to the history (appended, flushed)."""
    with open(history_path(salt_file), "a") as fh:
        fh.write(base64.b64encode(salt).decode() + "\n")
        fh.flush()


def with_hq_uses(records: Iterable[dict], csv_path: Path, old_salts: list[bytes], program: str,
                 db_path: Path) -> Iterator[dict]:
    """``records`` (one per row of ``csv_path``, as ``records_from_csv`` yields them) with
    ``uses`` set from HQ's events for the code's hashes under ``old_salts``."""
    if not Path(db_path).is_file():
        raise ValueError(f"{db_path}: no HQ database (kiosk-hq collect --db writes it)")
    db = HqDb(db_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            for row, record in zip(csv.DictReader(fh), records, strict=True):
                if record.get("op", "put") == "put":
                    code = (row.get("code") or "").strip()
                    uses = sum(db.conn.execute(_USES, (program, code_hash(salt, code))).fetchone()[0]
                               for salt in old_salts)
                    if uses:
                        record = {**record, "uses": uses}
                yield record
    finally:
        db.close()
