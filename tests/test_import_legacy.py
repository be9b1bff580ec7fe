"""A device upgraded from the single-database layout: its list (in the ledger's
``codes`` table) keeps answering until the next import, a delta on it works (the old
table becomes a list file first), and the old table is emptied."""

import base64
import json

from kiosk.core import codelist, codes, timefmt
from kiosk.core.store import Store


def make_legacy(device, hq, entries):
    """Install a list the way the previous importer stored it (no list files)."""
    b = hq.bundle([c for c, _ in entries], 1)  # only for its salt and manifest fields
    manifest = json.loads((b / "manifest.json").read_bytes())
    salt = base64.b64decode(manifest["code_salt"])
    store = Store.in_dir(device.config().data_dir)
    with store.transaction() as tx:
        for code, revoked in entries:
            tx.execute("INSERT INTO codes (code_hash, reward_id, valid_from, valid_until, max_uses, "
                       "stores, revoked) VALUES (?, 'coffee', NULL, NULL, 1, NULL, ?)",
                       (codes.code_digest(salt, code), revoked))
        tx.execute(
            "INSERT INTO code_list (id, program, version, base_version, issued_at, expires_at, "
            "key_id, code_salt, rewards, manifest_sha256, code_count, imported_at) "
            "VALUES (1, 'demo', 1, NULL, ?, ?, 'hq1', ?, ?, 'x', ?, ?)",
            (manifest["issued_at"], manifest["expires_at"], salt, json.dumps(manifest["rewards"]),
             sum(1 for _c, r in entries if not r), timefmt.format(timefmt.parse(manifest["issued_at"]))))
    return store


def test_legacy_list_answers_then_a_delta_moves_it_into_a_file(hq, device):
    store = make_legacy(device, hq, [("OLD-0001", 0), ("OLD-0002", 0), ("GONE-0003", 1)])
    assert device.verdict("OLD-0001")["verdict"] == "ready"
    assert device.verdict("GONE-0003")["verdict"] == "revoked"
    assert device.run("redeem", "OLD-0002", "--confirm").rc == 0

    delta = hq.bundle([{"code": "OLD-0001", "op": "revoke"}, {"code": "NEW-0004", "op": "put"}],
                      2, base=1, header=("code", "reward_id", "op"))
    run = device.import_(delta)
    assert run.rc == 0, run.err
    expect = {"OLD-0001": "revoked", "OLD-0002": "already_redeemed", "GONE-0003": "revoked",
              "NEW-0004": "ready", "NONE-0005": "unknown"}
    assert {c: device.verdict(c)["verdict"] for c in expect} == expect
    have = store.current_list()
    assert have.snapshot_file and have.overlay_file and have.code_count == 2
    assert store.conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0
    folder = codelist.list_dir(store.path)
    assert {p.name for p in folder.iterdir()} == {have.snapshot_file, have.overlay_file}


def test_full_import_replaces_a_legacy_list_and_empties_its_table(hq, device):
    store = make_legacy(device, hq, [("OLD-0001", 0)])
    assert device.import_(hq.bundle(["NEW-0001"], 2)).rc == 0
    assert device.verdict("NEW-0001")["verdict"] == "ready"
    assert device.verdict("OLD-0001")["verdict"] == "unknown"
    assert store.conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0
