"""Replace a small file all at once, so a reader or a crash never sees half of it."""

import os
from pathlib import Path


def write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``PATH.tmp`` and a rename.

    The new file gets ``mode`` (minus the umask): private by default, since most
    callers write passwords and salts.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
