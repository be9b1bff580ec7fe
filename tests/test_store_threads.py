"""A Store shared by threads: closing it never pulls the connection from under a
transaction another thread is in (that crashed the interpreter at app exit while a
receipt's print job was still committing)."""

import threading

from kiosk.core.store import Store


def test_close_waits_for_the_transaction_in_progress(tmp_path):
    store = Store.in_dir(tmp_path)
    inside, release = threading.Event(), threading.Event()
    outcome = {}

    def writer():
        try:
            with store.transaction() as conn:
                inside.set()
                release.wait(10)
                conn.execute("CREATE TABLE t (x)")
            outcome["ok"] = True
        except Exception as exc:  # pragma: no cover - the failure this test looks for
            outcome["error"] = exc

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "close() returned while another thread was inside a transaction"
    release.set()
    t.join(10)
    closer.join(10)
    assert outcome == {"ok": True}
    assert not closer.is_alive()
