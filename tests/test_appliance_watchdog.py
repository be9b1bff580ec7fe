"""kiosk.watchdog speaks systemd's notify protocol: datagrams on $NOTIFY_SOCKET.

A real Unix datagram socket stands in for systemd's end (it is what systemd
listens on), in the file-system and the abstract namespace."""

import os
import socket

import pytest

from kiosk import watchdog


@pytest.fixture(params=["path", "abstract"])
def systemd_socket(request, tmp_path, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    else:
        name = f"kiosk-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(5)
    yield sock
    sock.close()


def test_ready_ping_stopping_reach_systemd(systemd_socket):
    assert watchdog.notify_ready("scanning")
    assert systemd_socket.recv(4096) == b"READY=1\nSTATUS=scanning"
    assert watchdog.ping()
    assert systemd_socket.recv(4096) == b"WATCHDOG=1"
    assert watchdog.notify_stopping()
    assert systemd_socket.recv(4096) == b"STOPPING=1"


def test_no_ops_off_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert watchdog.notify_ready() is False and watchdog.ping() is False


def test_a_vanished_socket_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert watchdog.ping() is False


def test_ping_interval_follows_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog.interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog.interval_s(7.0) == 7.0
