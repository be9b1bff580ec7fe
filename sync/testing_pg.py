"""A throwaway PostgreSQL cluster for tests and benchmarks (like ``sync.testing.Broker``).

``Postgres(folder).start()`` runs Debian's ``initdb`` in a new temporary folder and
``pg_ctl start`` on a free loopback port with its socket in that folder: never a
shared server, gone after :meth:`stop`. PostgreSQL refuses to run as root, so when the
tests run as root (CI) the cluster runs as the ``postgres`` user that Debian's
package creates, through ``runuser``.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from sync.testing import free_port


def find_bin(name: str) -> Path | None:
    """``initdb``/``pg_ctl`` of the newest PostgreSQL under /usr/lib/postgresql."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / name).exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] / name if versions else None


def available() -> bool:
    return find_bin("initdb") is not None and (os.geteuid() != 0 or _postgres_user() is not None)


def _postgres_user():
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


class Postgres:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="kiosk-pg-"))
        self.data = self.folder / "data"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "postgres", "--"]
        return subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self) -> "Postgres":
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        if os.geteuid() == 0:
            user = _postgres_user()
            if user is None:
                raise RuntimeError("running as root needs the postgres user (Debian's package)")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        done = self._run(str(initdb), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")
        done = self._run(str(pg_ctl), "-D", str(self.data), "-o", options, "-l",
                         str(self.folder / "server.log"), "-w", "-t", "60", "start")
        if done.returncode:
            log = (self.folder / "server.log")
            tail = log.read_text()[-800:] if log.exists() else done.stderr
            raise RuntimeError(f"PostgreSQL did not start: {tail.strip()}")
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self._run(str(find_bin("pg_ctl")), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
