"""Salt rotation without forgetting use counts, end to end and offline first.

A kiosk redeems a code while offline. HQ then rotates the salt (``kiosk-hq sign
--rotate-salt --uses-from HQ_DB``) before that redemption reached it. The kiosk must
not switch to that list (the code would be redeemable again): it keeps the old list,
says so, sends the redemption when the network is back, still refuses the list that
was signed without it, and switches to the next rotated list, which carries the use
HQ now knows. Real mosquitto, agent, collector, ``kiosk`` and ``kiosk-hq`` commands."""

import threading
import uuid

from helpers import Hq

from kiosk import config, context
from kiosk.core import importer
from kiosk.core.verdict import Verdict
from kiosk.doctor import data as doctor_data
from kiosk.ui.screens.sync import sync_lines
from sync.agent import Agent
from sync.hq import publish as hq_publish
from sync.hq.collect import Collector
from sync.hq.db import HqDb
from sync.testing import Broker, hq_settings, wait_until, write_device_config


class Ctx:
    def __init__(self, store):
        self.store = store


def test_offline_redemption_survives_a_salt_rotation(tmp_path):
    hq = Hq(tmp_path / "hq", program=f"p{uuid.uuid4().hex[:8]}")
    assert hq.keygen().rc == 0
    codes = ["AAAA-1111", "BBBB-2222", "CCCC-3333"]
    hq_db = tmp_path / "hq.sqlite"
    HqDb(hq_db).close()
    threads = []

    def start(target, *args, **kw):
        thread = threading.Thread(target=target, args=args, kwargs=kw, daemon=True)
        thread.start()
        return thread

    with Broker(tmp_path / "broker") as broker:
        password = broker.add_device(hq.program, "s1", "k1")
        cfg_path = write_device_config(tmp_path / "k1", broker, device="k1", store="s1",
                                       program=hq.program, trust={"hq1": hq.pub},
                                       password_file=password)
        cfg = config.load(cfg_path)
        ledger = context.open_ledger(cfg)
        stop_collect = threading.Event()
        collector = Collector(HqDb(hq_db), hq.program)
        threads.append((stop_collect.set, start(collector.run, hq_settings(broker), stop=stop_collect)))
        try:
            hq_publish.publish(hq_settings(broker), hq.bundle(codes, 1), log=lambda *_: None)
            agent = Agent(cfg)
            thread = start(agent.run)
            wait_until(lambda: (c := ledger.store.current_list()) and c.version == 1, 60,
                       what="v1 over MQTT")
            agent.stop()
            thread.join(15)

            # offline: a redemption HQ does not know of, then HQ rotates the salt
            assert ledger.confirm("AAAA-1111").verdict is Verdict.REDEEMED
            rotated = hq.bundle(codes, 2, extra=["--rotate-salt", "--uses-from", hq_db])
            imported = _kiosk(cfg_path, "codes", "import", rotated)
            assert imported.rc == 1 and "[salt_wait]" in imported.err
            assert ledger.store.current_list().version == 1
            assert ledger.check("AAAA-1111").verdict is Verdict.ALREADY_REDEEMED
            waiting = importer.salt_wait(ledger.store)
            assert waiting["version"] == 2 and waiting["pending"] == 1
            check = doctor_data.code_list(Ctx(ledger.store))
            assert check.status == "WARN" and "version 2 (new code salt) waits" in check.message
            assert any("waits until HQ has 1 redemption" in line for line in sync_lines(
                {"online": False, "pending": 1, "list_version": 1, "list_salt_wait": waiting}, "en"))
            hq_publish.publish(hq_settings(broker), rotated, log=lambda *_: None)

            # back online: the redemption reaches HQ; the list signed before it is refused
            agent = Agent(cfg)
            thread = start(agent.run)
            threads.append((agent.stop, thread))
            wait_until(lambda: ledger.outbox_depth() == 0, 60, what="redemption acked by HQ")
            wait_until(lambda: "signed" in ((w := importer.salt_wait(ledger.store)) and w["why"] or ""),
                       90, what="the agent tried v2 again after the ack")
            assert ledger.store.current_list().version == 1
            assert ledger.check("AAAA-1111").verdict is Verdict.ALREADY_REDEEMED

            # HQ signs again with the use it now knows: the kiosk switches and still refuses
            again = hq.bundle(codes, 3, extra=["--rotate-salt", "--uses-from", hq_db])
            hq_publish.publish(hq_settings(broker), again, log=lambda *_: None)
            wait_until(lambda: ledger.store.current_list().version == 3, 60, what="v3 installed")
            assert ledger.check("AAAA-1111").verdict is Verdict.ALREADY_REDEEMED
            assert ledger.check("BBBB-2222").verdict is Verdict.READY
            assert importer.salt_wait(ledger.store) is None
            # and a redemption under the new salt counts on top of HQ's
            assert ledger.confirm("BBBB-2222").verdict is Verdict.REDEEMED
            assert ledger.check("BBBB-2222").verdict is Verdict.ALREADY_REDEEMED
        finally:
            for stop, thread in reversed(threads):
                stop()
                thread.join(15)


def _kiosk(cfg_path, *argv):
    from helpers import run_main

    from kiosk import cli

    return run_main(cli.main, ["--config", cfg_path, *argv])
