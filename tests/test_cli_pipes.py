"""A reader that leaves early (`kiosk scan --json | head -1`) is not an error."""

import subprocess
import sys

import qrcode


def test_scan_into_a_closed_pipe_ends_quietly(tmp_path):
    for i, text in enumerate(["AAAA-1111", "BBBB-2222", "CCCC-3333", "DDDD-4444"]):
        qrcode.make(text).save(tmp_path / f"card{i}.png")
    scan = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "scan", "--camera",
                             f"replay:{tmp_path}?fps=5", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = scan.stdout.readline()
    scan.stdout.close()  # like `head -1` exiting
    err = scan.stderr.read().decode()
    assert scan.wait(30) == 0, err
    assert b'"AAAA-1111"' in first
    assert "Traceback" not in err and "BrokenPipeError" not in err
