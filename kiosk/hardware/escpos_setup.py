"""Loading python-escpos' printer database without its import-time side effects.

Called by the entry points (``kiosk`` commands that open a printer, ``kiosk-sync``,
the test suite, the printing benchmark) before anything imports python-escpos, and
by :func:`load`, through which the printer package imports python-escpos on first
use: importing the printer package changes no process state and loads none of
python-escpos, pyusb, pyserial or python-barcode (about 4 MB the touch screen does
not carry until its first receipt).

``escpos.capabilities`` parses a 400 kB YAML/JSON printer database on import and
caches it as a pickle in ``$ESCPOS_CAPABILITIES_PICKLE_DIR`` or, if unset, in a *new*
temporary folder each time: 0.4 s per process and a folder left in /tmp each run. It
also calls ``logging.basicConfig()``, which would take over the kiosk's logging.

:func:`prepare` keeps one cache per python-escpos version in the user's cache
folder, written atomically (a half-written pickle read by a second process would
break its import), and imports the module with the root logger left alone.
"""

import importlib
import logging
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

_done = False


def _cache_dir() -> Path | None:
    version = metadata.version("python-escpos")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    for root in (Path(base) / "redeem-kiosk", Path(tempfile.gettempdir()) / f"redeem-kiosk-{os.getuid()}"):
        folder = root / f"escpos-{version}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def prepare() -> None:
    """Import ``escpos.capabilities`` once, with a shared, atomically written cache."""
    global _done
    if _done or "escpos.capabilities" in sys.modules:
        _done = True
        return
    given = os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR")
    # A folder someone else made for us (an inherited variable) counts only if this
    # user may write there: python-escpos rewrites a stale cache in place.
    shared = None if given and os.access(given, os.W_OK | os.X_OK) else _cache_dir()
    private = None
    if shared is not None:
        ready = any(shared.glob("*.capabilities.pickle"))
        private = None if ready else Path(tempfile.mkdtemp(prefix="escpos-"))
        os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(private or shared)
    root = logging.getLogger()
    guard = None if root.handlers else logging.NullHandler()
    if guard:
        root.addHandler(guard)  # makes escpos' logging.basicConfig() a no-op
    scratch = tempfile.mkdtemp(prefix="escpos-import-")
    saved, tempfile.tempdir = tempfile.tempdir, scratch  # its eager mkdtemp() lands here
    try:
        import escpos.capabilities  # noqa: F401
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)
        if guard:
            root.removeHandler(guard)
        if private is not None:
            for pickle in private.glob("*.capabilities.pickle"):
                try:
                    os.replace(pickle, shared / pickle.name)  # atomic: readers see all or nothing
                except OSError:
                    pass
            shutil.rmtree(private, ignore_errors=True)
            os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(shared)
    _done = True


def load(module: str = "escpos.printer"):
    """python-escpos' ``module`` (e.g. ``escpos.printer``), after :func:`prepare`.

    The printer package imports python-escpos only through here, when a receipt is
    rendered or a printer opened, so the kiosk starts without it."""
    prepare()
    return importlib.import_module(module)
