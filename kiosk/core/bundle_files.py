"""Where a bundle's files come from, read safely: a directory or a ``.tar``.

A bundle on a USB stick or in the sync agent's download folder is untrusted until its
signature and hashes are checked, and even its file types can be hostile: a chunk
linked to /dev/zero, a manifest that is a FIFO, a tar of a million entries or with a
64 GiB sparse member. Files are therefore opened only if they are regular files,
without following links or blocking, and a tar's index is read with bounds
(docs/formats.md, "Bounds"). Every refusal is a :class:`BundleError`.
"""

import errno
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, Protocol

from kiosk.errors import BundleError
from kiosk.i18n import N_, Msg

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_CHUNK_BYTES = 1 << 30  # a chunk file (kiosk-hq writes about 4 MB per 100,000 records)
MAX_TAR_MEMBERS = 10_000  # entries in a bundle .tar (a 10-million-code list has about 103)
MAX_TAR_BYTES = 4 << 30  # sum of the members' sizes


class Source(Protocol):
    """Where a bundle's files come from: a directory, a tar file, received MQTT chunks."""

    def read_bytes(self, name: str) -> bytes: ...

    def open(self, name: str) -> IO[bytes]: ...


class DirSource:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def open(self, name: str) -> IO[bytes]:
        return open_regular(self.path / name, f"{name} ({self.path})")  # names only, no words

    def close(self) -> None:
        pass


def _kind(mode: int) -> Msg:
    for test, word in ((stat.S_ISDIR, N_("a directory")), (stat.S_ISFIFO, N_("a FIFO")),
                       (stat.S_ISCHR, N_("a character device")), (stat.S_ISBLK, N_("a block device")),
                       (stat.S_ISSOCK, N_("a socket")), (stat.S_ISLNK, N_("a symbolic link"))):
        if test(mode):
            return Msg(word)
    return Msg("not a regular file")


def open_regular(path: Path, what: str) -> IO[bytes]:
    """Open a bundle file for reading only if it is a regular file: never follows a
    symbolic link (a chunk linked to /dev/zero) and never blocks (a manifest that is
    a FIFO), so such a bundle fails at once with ``not_a_file``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BundleError("missing_file", Msg("bundle has no {file}", file=what)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError("not_a_file", Msg("{file} is a symbolic link; a bundle holds only "
                                                "regular files", file=what)) from None
        raise BundleError("not_a_file", Msg("cannot open {file}: {error}", file=what,
                                            error=exc.strerror)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise BundleError("not_a_file", Msg("{file} is {kind}, not a regular file", file=what,
                                                kind=_kind(mode)))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class TarSource:
    """Reads members of a ``.tar`` without extracting it (files may sit in one folder)."""

    def __init__(self, path: Path):
        try:
            self._tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BundleError("bad_archive", Msg("{path}: not a readable tar file ({error})", path=path,
                                                 error=exc)) from exc
        try:
            self._members = self._index(path)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            self._tar.close()
            raise BundleError("bad_archive", Msg("{path}: not a readable tar file ({error})", path=path,
                                                 error=exc)) from exc
        except BaseException:
            self._tar.close()
            raise

    def _index(self, path: Path) -> dict[str, tarfile.TarInfo]:
        """Members by base name, read header by header with bounds: at most
        MAX_TAR_MEMBERS entries and MAX_TAR_BYTES in all; only directories and plain
        files (no links, devices, FIFOs or sparse files, which could stand for far more
        bytes than the archive holds)."""
        members, total = {}, 0
        for n, member in enumerate(self._tar, 1):
            if n > MAX_TAR_MEMBERS:
                raise BundleError("bad_archive", Msg("{path}: more than {most:,} entries; a bundle "
                                                     "archive has a few files", path=path,
                                                     most=MAX_TAR_MEMBERS))
            if member.isdir():
                continue
            if not member.isfile() or member.issparse():
                kind = (N_("a sparse file") if member.issparse() else N_("a link") if member.issym()
                        or member.islnk() else N_("a device or FIFO") if member.isdev()
                        else N_("not a plain file"))
                raise BundleError("bad_archive", Msg("{path}: member {member} is {kind}; a bundle "
                                                     "archive holds only plain files", path=path,
                                                     member=repr(member.name), kind=Msg(kind)))
            total += member.size
            if member.size > MAX_CHUNK_BYTES or total > MAX_TAR_BYTES:
                raise BundleError("bad_archive", Msg("{path}: member {member} makes the archive larger "
                                                     "than a bundle can be", path=path,
                                                     member=repr(member.name)))
            members[Path(member.name).name] = member
        return members

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def open(self, name: str) -> IO[bytes]:
        member = self._members.get(name)
        fh = self._tar.extractfile(member) if member else None
        if fh is None:
            raise BundleError("missing_file", Msg("bundle archive has no {file}", file=name))
        return fh

    def close(self) -> None:
        self._tar.close()


def open_source(path: Path) -> DirSource | TarSource:
    """The files of a bundle: a directory, or a .tar (read in place, never unpacked)."""
    path = Path(path)
    if path.is_dir():
        return DirSource(path)
    if path.is_file():
        return TarSource(path)
    if path.exists():
        raise BundleError("not_a_file", Msg("{path} is {kind}, not a bundle directory or .tar file",
                                            path=path, kind=_kind(path.stat().st_mode)))
    raise BundleError("missing_file", Msg("no bundle at {path}", path=path))
