"""Replace a small file all at once, so a reader or a crash never sees half of it."""

import os
from pathlib import Path


def write_text(path: Path, text: str, mode: int = 0o600, *, keep_owner: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``PATH.tmp`` and a rename.

    The new file gets ``mode`` (minus the umask): private by default, since most
    callers write passwords and salts. With ``keep_owner`` an existing file keeps its
    owner, group and mode, as an in-place edit would: a broker's password file
    rewritten by root must stay readable by the broker's own user.
    """
    path = Path(path)
    old = path.stat() if keep_owner and path.exists() else None
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        if old is not None:
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fh.fileno(), old.st_uid, old.st_gid)
            os.fchmod(fh.fileno(), old.st_mode & 0o7777)
        fh.write(text)
    tmp.replace(path)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (after a rename into it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
