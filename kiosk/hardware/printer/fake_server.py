"""A fake network receipt printer: a TCP server on a free loopback port.

It keeps the bytes of every connection and answers real-time status queries
(``DLE EOT n``) at the start of a connection from a table, so tests and demos can
play a healthy printer, one out of paper or with its cover open, one that answers
nothing, or one that hangs up. Ships in the package like gpiozero's mock pins.
"""

import socket
import threading

from kiosk.hardware.printer.status import QUERY

HEALTHY = {1: 0x12, 2: 0x12, 4: 0x12}
PAPER_OUT = {1: 0x1A, 2: 0x32, 4: 0x72}
COVER_OPEN = {1: 0x1A, 2: 0x16, 4: 0x12}
OFFLINE = {1: 0x1A, 2: 0x52, 4: 0x12}


class FakeNetworkPrinter:
    """``status`` maps n -> answer byte (None: stay silent). ``hang_up`` closes at once."""

    def __init__(self, status: dict[int, int] | None = None, *, hang_up: bool = False):
        self.status = HEALTHY if status is None else status
        self.hang_up = hang_up
        self.jobs: list[bytes] = []
        self._job_added = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-printer", daemon=True)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeNetworkPrinter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_for_jobs(self, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """The jobs received, once ``count`` connections have sent data and closed
        (or, if fewer came, whatever arrived within ``timeout`` seconds)."""
        with self._job_added:
            self._job_added.wait_for(lambda: len(self.jobs) >= count, timeout)
            return list(self.jobs)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                if not self.hang_up:
                    self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data, answering = bytearray(), True
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            while answering and len(data) >= 3 and bytes(data[:2]) == QUERY[1][:2]:
                answer = self.status.get(data[2])
                if answer is not None:
                    conn.sendall(bytes([answer]))
                del data[:3]
            if data:
                answering = False  # the job has started: status bytes now are just data
        if data:
            with self._job_added:
                self.jobs.append(bytes(data))
                self._job_added.notify_all()
