"""The progress of a long import, as the staff Sync page, the heartbeat and the CLI see it."""

import base64
import json
import os

from kiosk.core import bundle, bundle_writer, codelist, codes, importer, keys
from kiosk.ui.screens.sync import sync_lines


def big(hq, tmp_path, n=3_000):
    salt = base64.b64decode((hq.key.parent / "demo.salt").read_text())
    records = ({"op": "put", "code_hash": codes.code_hash(salt, f"PRG{i:06d}"), "reward_id": "coffee",
                "valid_from": None, "valid_until": None, "max_uses": 1, "stores": None}
               for i in range(n))
    spec = bundle_writer.Spec("demo", 2, "hq1", salt, hq.rewards)
    return bundle_writer.write(spec, records, keys.load_private(hq.key), tmp_path / "big",
                               per_chunk=500)


def test_progress_is_visible_to_other_processes_while_a_list_loads(hq, device, tmp_path, monkeypatch):
    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    path = big(hq, tmp_path)
    monkeypatch.setattr(importer, "BATCH", 500)
    importing, other = device.ledger().store, device.ledger().store
    assert importer.import_progress(other) is None
    seen = []

    def progress(done, total):
        now = importer.import_progress(other)  # what the UI or the agent reads
        seen.append((now.version, now.percent, now.phase))
        assert device.verdict("AAAA-1111")["verdict"] == "ready"  # old list meanwhile

    importer.import_bundle(importing, bundle.DirSource(path), device.config().trusted_keys,
                           "demo", progress=progress)
    assert all(v == 2 and phase == "staging" for v, _pct, phase in seen)
    percents = [pct for _v, pct, _phase in seen]
    assert percents == sorted(percents) and percents[0] < 20 and 60 <= percents[-1] <= 100
    assert len(set(percents)) >= 4
    assert importer.import_progress(other) is None  # gone when the import ends


def test_progress_left_by_a_killed_importer_is_ignored(hq, device):
    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    store = device.ledger().store
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a process id that is surely gone
    record = {"pid": pid, "version": 9, "percent": 40, "phase": "staging", "done": 4, "total": 10}
    (codelist.list_dir(store.path) / codelist.PROGRESS).write_text(json.dumps(record))
    assert importer.import_progress(store) is None
    record["pid"] = os.getpid()
    (codelist.list_dir(store.path) / codelist.PROGRESS).write_text(json.dumps(record))
    assert importer.import_progress(store).text() == "list v9 loading 40%"


def test_sync_page_says_a_list_is_loading():
    info = {"online": True, "pending": 0, "list_version": 41, "list_codes": 10,
            "list_loading": {"version": 42, "percent": 63}}
    assert "New code list version 42 loading: 63%" in sync_lines(info, "en")
    assert any("42" in line and "63%" in line for line in sync_lines(info, "ru"))
    assert not any("63%" in line for line in sync_lines({**info, "list_loading": None}, "en"))


def test_cli_prints_percentage_lines_when_not_on_a_terminal(hq, device, tmp_path, monkeypatch):
    from kiosk.commands import codes as codes_cmd

    assert device.import_(hq.bundle(["AAAA-1111"], 1)).rc == 0
    monkeypatch.setattr(codes_cmd._Progress, "LINES_FROM", 1_000)
    monkeypatch.setattr(importer, "BATCH", 500)
    run = device.import_(big(hq, tmp_path))
    assert run.rc == 0, run.err
    lines = [line for line in run.err.splitlines() if line.startswith("importing: ")]
    assert lines[-1] == "importing: 100% (3,000/3,000 codes); sorting into the new list"
    assert len(lines) >= 4


def test_heartbeat_says_a_list_is_loading(tmp_path):
    from types import SimpleNamespace

    from kiosk import config
    from sync.agent import Agent
    from sync.testing import make_pki, write_device_config

    pki = make_pki(tmp_path / "pki")
    cfg_path = write_device_config(tmp_path / "k1", SimpleNamespace(url="mqtts://127.0.0.1:9", pki=pki),
                                   device="k1", store="s1", program="demo", trust={},
                                   password_file=None)
    agent = Agent(config.load(cfg_path))
    assert agent.heartbeat_body()["list_loading"] is None
    record = {"pid": os.getpid(), "version": 42, "percent": 63, "phase": "staging", "done": 63,
              "total": 100}
    folder = codelist.list_dir(agent.store.path)
    folder.mkdir(exist_ok=True)
    (folder / codelist.PROGRESS).write_text(json.dumps(record))
    assert agent.heartbeat_body()["list_loading"] == "list v42 loading 63%"
