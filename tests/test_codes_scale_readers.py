"""Read-only commands never wait for a writer (issue 11 item 10).

Another process holds SQLite's write lock (``BEGIN IMMEDIATE``, as a confirm or the
sync agent does) for as long as the test wants. ``kiosk redeem CODE`` (no --confirm)
and ``kiosk codes status`` must answer while it is held: opening the store must not
take the write lock, and the checks read through WAL."""

import sqlite3
import subprocess
import sys

WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO meta (key, value) VALUES ('writer', 'busy') "
             "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def still_locked(db) -> bool:
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        conn.close()
    return False


def kiosk(device, *argv):
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "--config", str(device.path), *argv],
                          capture_output=True, text=True, timeout=120)


def test_redeem_check_and_status_answer_while_a_writer_holds_the_lock(hq, device):
    assert device.import_(hq.bundle(["AAAA-1111", "BBBB-2222"], 1)).rc == 0
    assert device.ledger().confirm("BBBB-2222").verdict == "redeemed"
    db = device.config().data_dir / "kiosk.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        assert still_locked(db)
        ready = kiosk(device, "redeem", "AAAA-1111", "--json")
        used = kiosk(device, "redeem", "BBBB-2222")
        status = kiosk(device, "codes", "status", "--json")
        assert still_locked(db)  # all three answered while the writer held the lock
    finally:
        writer.communicate("\n", timeout=30)
    assert ready.returncode == 0, ready.stderr
    assert '"verdict": "ready"' in ready.stdout
    assert used.returncode == 1 and "already" in used.stdout.lower(), used.stdout + used.stderr
    assert status.returncode == 0 and '"version": 1' in status.stdout, status.stderr
    assert writer.returncode == 0
