"""Reusable builders for core tests: an HQ that signs real bundles through
``kiosk-hq sign``, a device config in a temp folder, and a way to run ``kiosk``
commands in-process (``kiosk.cli.main``) and read their exit code and output."""

import contextlib
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from kiosk import cli, config, context
from kiosk.core import keys
from kiosk.core.ledger import Ledger
from sync import hq_cli

PROGRAM = "demo"
KEY_ID = "hq1"
REWARDS = {
    "coffee": {"type": "item", "value": 1,
               "title": {"en": "Free coffee", "ru": "Бесплатный кофе",
                         "uz": "Bepul qahva", "kk": "Тегін кофе"}},
    "ten": {"type": "percent", "value": 10, "title": {"en": "10% off"}},
}
CSV_HEADER = ("code", "reward_id", "valid_from", "valid_until", "max_uses", "stores")


@dataclass
class Run:
    """What a command did: exit code, standard output and standard error."""

    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_main(main, argv: list[str]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code if isinstance(exc.code, int) else 2
    return Run(rc, out.getvalue(), err.getvalue())


def write_csv(path: Path, rows: list[dict], header=CSV_HEADER) -> Path:
    """A codes CSV; each row is a dict (missing columns are empty)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


def as_rows(codes) -> list[dict]:
    """Accept plain code strings or dicts; default reward is ``coffee``."""
    return [{"code": c, "reward_id": "coffee"} if isinstance(c, str) else {"reward_id": "coffee", **c}
            for c in codes]


@dataclass
class Hq:
    """The HQ side: a key pair made by ``kiosk-hq keygen`` and its signing folder."""

    dir: Path
    key_id: str = KEY_ID
    program: str = PROGRAM
    rewards: dict = field(default_factory=lambda: REWARDS)
    _n: int = 0

    @property
    def key(self) -> Path:
        return self.dir / "keys" / keys.PRIVATE_NAME

    @property
    def pub(self) -> Path:
        return self.dir / "keys" / keys.PUBLIC_NAME

    def keygen(self) -> Run:
        return run_main(hq_cli.main, ["keygen", "--out", self.dir / "keys"])

    def sign(self, csv_path: Path, out: Path, version: int, *extra) -> Run:
        rewards = self.dir / "rewards.json"
        rewards.write_text(json.dumps(self.rewards, ensure_ascii=False), encoding="utf-8")
        return run_main(hq_cli.main, [
            "sign", csv_path, "--key", self.key, "--key-id", self.key_id,
            "--program", self.program, "--version", version, "--rewards", rewards,
            "--out", out, *extra])

    def bundle(self, codes, version: int = 1, *, base: int | None = None,
               header=CSV_HEADER, tar: bool = False, extra=()) -> Path:
        """Sign ``codes`` (strings or CSV row dicts) into a new bundle directory."""
        self._n += 1
        csv_path = write_csv(self.dir / f"codes-{self._n}.csv", as_rows(codes), header)
        out = self.dir / f"bundle-{self._n}-v{version}"
        args = list(extra) + (["--base-version", base] if base is not None else [])
        args += ["--tar"] if tar else []
        run = self.sign(csv_path, out, version, *args)
        assert run.rc == 0, run.err
        return out.with_name(out.name + ".tar") if tar else out


def device_toml(data_dir: Path, trust: dict[str, Path], *, device: str = "kiosk-1",
                store: str = "s1", program: str = PROGRAM, extra: str = "") -> str:
    lines = ["[device]", f'id = "{device}"', f'store = "{store}"', f'program = "{program}"',
             f'data_dir = "{data_dir}"', "", "[trust.keys]"]
    lines += [f'{k} = "{v}"' for k, v in trust.items()]
    return "\n".join(lines) + "\n" + extra


@dataclass
class Device:
    """A kiosk with its own config file and data folder."""

    path: Path

    def run(self, *argv) -> Run:
        return run_main(cli.main, ["--config", self.path, *argv])

    def config(self) -> config.Config:
        return config.load(self.path)

    def ledger(self, **kw) -> Ledger:
        return context.open_ledger(self.config(), **kw)

    def import_(self, bundle_path: Path) -> Run:
        return self.run("codes", "import", bundle_path)

    def verdict(self, payload: str, *extra) -> dict:
        run = self.run("redeem", payload, "--json", *extra)
        return run.json() | {"rc": run.rc}

    def version(self):
        return self.run("codes", "status", "--json").json()["version"]


def make_device(root: Path, hq: Hq, *, name: str = "kiosk-1", store: str = "s1",
                extra: str = "") -> Device:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "kiosk.toml"
    path.write_text(device_toml(root / "data", {hq.key_id: hq.pub}, device=name, store=store,
                                program=hq.program, extra=extra), encoding="utf-8")
    return Device(path)


def make_bundle(hq: Hq, codes, version: int = 1, **kw) -> Path:
    """Module-level alias of :meth:`Hq.bundle` for tests that prefer functions."""
    return hq.bundle(codes, version, **kw)


def resign(bundle_dir: Path, key_path: Path, mutate=None) -> Path:
    """Rewrite a bundle's manifest (optionally changed by ``mutate(dict)``) and sign it
    again with the HQ key, so a test can alter chunks and still pass the signature."""
    manifest = json.loads((bundle_dir / "manifest.json").read_bytes())
    if mutate:
        mutate(manifest)
    raw = json.dumps(manifest, indent=1).encode()
    (bundle_dir / "manifest.json").write_bytes(raw)
    (bundle_dir / "manifest.sig").write_bytes(keys.load_private(key_path).sign(raw))
    return bundle_dir


def rehash_chunks(manifest: dict, bundle_dir: Path) -> None:
    """A ``resign`` mutation: record the chunks' current sha256 and sizes in the manifest
    (the unpacked size is left out when the chunk is not gzip any more)."""
    import gzip
    import hashlib

    for chunk in manifest["chunks"]:
        data = (bundle_dir / chunk["name"]).read_bytes()
        chunk["sha256"], chunk["size"] = hashlib.sha256(data).hexdigest(), len(data)
        try:
            chunk["ndjson_size"] = len(gzip.decompress(data))
        except (OSError, EOFError):
            chunk.pop("ndjson_size", None)


class ManualWorker:
    """Holds jobs until the test runs them, like a busy worker thread would."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, done=None):
        self.jobs.append((fn, done))

    def run(self):
        while self.jobs:
            fn, done = self.jobs.pop(0)
            result = fn()
            if done:
                done(result, None)

    def close(self, timeout=0):
        pass
