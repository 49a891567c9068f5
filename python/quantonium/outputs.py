"""Where outputs go and how they are written: one set of rules for every file and folder Quantonium writes.

Every output (the ``.qnt`` of ``compress``, the folder of ``decompress``, the
file updated by ``eval``, the reports of ``inventory`` and ``compare``) goes
through this module:

1. **Checked before any work** (:func:`check_file`, :func:`check_folder`):
   a file output must not be a folder, a folder output must not exist or be
   an empty folder; neither may be one of the operation's inputs (same
   device and inode, so hard links and symlinks count); its parent must
   exist or be creatable, and be writable. A command checks its outputs
   before it loads anything, so a bad ``-o`` fails in a second, not after
   an hour of compression.
2. **Atomic** (:class:`AtomicFile`, :class:`AtomicFolder`): written under a
   temporary name beside the target, fsynced, renamed over the target, and
   the folder fsynced: the target holds either its old content or the
   complete new one, never a part; an error or an interruption removes the
   temporary.
3. **Symlinks are written through**: the link stays, and its target is
   replaced (atomically, in the target's folder).
4. **Special files are written in place**: character devices and FIFOs
   (``/dev/null``, a pipe) and anything reached through ``/dev`` or
   ``/proc`` (``/dev/stdout``, ``/dev/fd/N``: even when it names a regular
   file, the shell holds it open) are opened and written directly, never
   renamed over. Block devices and sockets are refused.
5. **Permissions follow the umask**: new files are created with mode
   ``0666``, new folders ``0777``, minus the umask (as ``touch`` and
   ``mkdir`` do); replacing an existing file keeps its permission bits.
6. **Temporaries are recognisable and cleaned**: they are named
   ``.<target>.<pid>.<random>.quantonium-tmp``; the writing process holds an
   exclusive ``flock`` on each for its whole life. A temporary is *stale*
   when nobody holds its lock (the kernel releases the locks of a process
   that dies, however it dies) and it is older than :data:`STALE_AFTER`
   seconds (the instant between creating a temporary and locking it). Each
   new output removes the stale temporaries of its user in its folder. A
   temporary of a live process is never removed: it holds its lock.

Errors are :class:`OutputError` (a ``ValueError``): one line naming the path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "STALE_AFTER",
    "TEMP_SUFFIX",
    "AtomicFile",
    "AtomicFolder",
    "OutputError",
    "Target",
    "check_file",
    "check_folder",
    "clean_stale",
    "save_safetensors",
    "write_bytes",
    "write_plain",
    "write_text",
]

TEMP_SUFFIX = ".quantonium-tmp"
#: Seconds a temporary must be old, besides unlocked, to count as stale.
STALE_AFTER = 60.0
_TEMP_RE = re.compile(r"\..{0,100}\.[0-9]{1,10}\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX), re.S)


class OutputError(ValueError):
    """An output that cannot or must not be written (one line, naming the path)."""


@dataclass(frozen=True)
class Target:
    """A checked output: ``path`` as given, ``real`` where the bytes go (symlinks followed).

    ``direct``: a special file, written in place; ``fd``: for ``/dev/stdout``,
    ``/dev/fd/N`` and the like, the descriptor of this process it names
    (written through a duplicate of it, at its current position).
    """

    path: Path
    real: Path
    direct: bool
    exists: bool
    fd: int | None = None


_PROC_FD = re.compile(r"/proc/(?:self|thread-self|[0-9]+)/fd/([0-9]+)")


def _under_proc(p: Path) -> bool:
    return p == Path("/proc") or Path("/proc") in p.parents


def _through_proc(path: Path) -> tuple[bool, int | None]:
    """Whether a path reaches its file through /proc (``/dev/stdout``, ``/dev/fd/1``, ...), and the
    descriptor of this process it names, if any."""
    q = Path(os.path.abspath(path))
    for _ in range(40):
        here = Path(os.path.realpath(q.parent)) / q.name
        if _under_proc(here):
            m = _PROC_FD.fullmatch(str(here))
            if m and (here.parts[2] in ("self", "thread-self") or here.parts[2] == str(os.getpid())):
                return True, int(m.group(1))
            return True, None
        if not here.is_symlink():
            return False, None
        q = Path(os.path.abspath(os.path.join(here.parent, os.readlink(here))))
    return False, None


def _identity(p: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _input_identities(inputs: Iterable[str | os.PathLike]) -> dict[tuple[int, int], Path]:
    """(device, inode) of every input file; a folder among the inputs stands for the files directly in it."""
    ids: dict[tuple[int, int], Path] = {}
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            try:
                entries = [e for e in p.iterdir() if e.is_file()]
            except OSError:
                entries = []
            for e in entries:
                ident = _identity(e)
                if ident:
                    ids[ident] = e
        else:
            ident = _identity(p)
            if ident:
                ids[ident] = p
    return ids


def _check_parent(path: Path, real: Path) -> None:
    """The parent of ``real`` exists as a writable folder, or can be made under a writable one."""
    anc = real.parent
    while not anc.exists():
        if anc.is_symlink():
            raise OutputError(f"{path}: {anc} is a broken symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{path}: {anc} is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {anc} is not writable")


def _resolve(path: Path) -> Path:
    """Where a path's bytes go: symbolic links followed (a dangling link: where it points)."""
    return Path(os.path.realpath(path))


def check_file(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> Target:
    """Checks a file output before any work is done; returns where and how it will be written.

    Raises :class:`OutputError` when the path is a folder, a block device
    or a socket, one of ``inputs``, or when its folder cannot be made or
    written.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise OutputError(f"{path!r}: not a file name")
    try:
        st = os.stat(p)  # follows symlinks
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise OutputError(f"{p}: cannot be used as an output ({e.strerror})") from None
    real = _resolve(p)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{p}: is a folder; give a file name")
        if stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            raise OutputError(f"{p}: is a {'block device' if stat.S_ISBLK(st.st_mode) else 'socket'}; not written")
        via_proc, fd = _through_proc(p)
        if via_proc or not stat.S_ISREG(st.st_mode):
            if fd is None and not os.access(p, os.W_OK):
                raise OutputError(f"{p}: is not writable")
            return Target(p, p, True, True, fd)
        clash = _input_identities(inputs).get((st.st_dev, st.st_ino))
        if clash is not None:
            raise OutputError(f"{p}: is also an input ({clash}); refusing to overwrite it, choose another output")
        _check_parent(p, real)
        return Target(p, real, False, True)
    _check_parent(p, real)
    return Target(p, real, False, False)


def check_folder(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> Target:
    """Checks a folder output before any work: it must not exist, or be an empty folder (a link to one is
    written through); its parent must exist or be creatable, and be writable; it must not be an input."""
    p = Path(path)
    if str(path) == "":
        raise OutputError(f"{path!r}: not a folder name")
    real = _resolve(p)
    ids = _input_identities(inputs)
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder; choose a new output folder")
        try:
            empty = not any(True for _ in real.iterdir())
        except OSError as e:
            raise OutputError(f"{p}: cannot be read ({e.strerror})") from None
        if not empty:
            raise OutputError(f"{p}: exists and is not an empty folder; choose a new output folder")
        if _identity(real) in ids:
            raise OutputError(f"{p}: is also an input; choose another output folder")
        _check_parent(p, real)
        return Target(p, real, False, True)
    if p.is_symlink() and not real.parent.exists():
        raise OutputError(f"{p}: is a broken symbolic link")
    _check_parent(p, real)
    return Target(p, real, False, False)


# --- temporaries ------------------------------------------------------------------------
def _temp_name(target: Path) -> str:
    return f".{target.name[:100]}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)


def clean_stale(folder: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Removes this user's stale temporaries in ``folder`` (see the module docstring); returns them.

    Best effort: a temporary that cannot be examined is left alone.
    """
    folder = Path(folder)
    removed: list[Path] = []
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not _TEMP_RE.fullmatch(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or now - st.st_mtime < STALE_AFTER:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if is_dir else 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its writer is alive
                continue
            same = os.fstat(fd)
            try:
                now_st = os.lstat(e.path)
            except OSError:
                continue
            if (same.st_dev, same.st_ino) != (now_st.st_dev, now_st.st_ino):
                continue  # replaced meanwhile
            if is_dir:
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if e.errno == errno.EFBIG:
        return "file too large (file size limit)"
    return e.strerror or str(e)


class AtomicFile:
    """A file output written by the rules of this module; ``file`` is the binary file object to write.

    ``commit()`` makes it appear (fsync, rename, folder fsync); ``abort()``
    (or an exception in a ``with`` block) removes the temporary and leaves
    the target as it was. A special file is written directly.
    """

    def __init__(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 temp: str | os.PathLike | None = None, resume_at: int | None = None) -> None:
        """``temp``: write into this file (in the target's folder) instead of a new temporary: a resumable
        writer's partial file, whose lock its caller holds; ``resume_at``: continue it from that byte
        (what follows is truncated)."""
        self.target = check_file(path, inputs=inputs)
        self.path = self.target.path
        self._tmp: Path | None = None
        self._done = False
        if temp is not None:
            self._open_given(Path(temp), resume_at)
            return
        if self.target.direct:
            try:
                if self.target.fd is not None:  # /dev/stdout & co: this process's own descriptor, where it stands
                    if self.target.fd in (1, 2):
                        (sys.stdout if self.target.fd == 1 else sys.stderr).flush()
                    self.file: IO[bytes] = os.fdopen(os.dup(self.target.fd), "wb")
                else:
                    self.file = open(self.target.real, "wb")
            except OSError as e:
                raise OutputError(f"{self.path}: cannot be opened for writing ({_describe(e)})") from None
            return
        real = self.target.real
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(real.parent)
            mode = None
            if self.target.exists:
                mode = stat.S_IMODE(os.stat(real).st_mode) & 0o777
            while True:
                tmp = real.parent / _temp_name(real)
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    break
                except FileExistsError:
                    continue
        except OSError as e:
            raise OutputError(f"{self.path}: cannot create a file in {real.parent} ({_describe(e)})") from None
        self._tmp = tmp
        try:
            _lock(fd)
            if mode is not None:
                os.fchmod(fd, mode)
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise

    def _open_given(self, tmp: Path, resume_at: int | None) -> None:
        if self.target.direct:
            raise OutputError(f"{self.path}: a resumable output cannot be a special file; write to a file")
        if Path(os.path.realpath(tmp.parent)) != Path(os.path.realpath(self.target.real.parent)):
            raise OutputError(f"{tmp}: a partial file must be in the target's folder ({self.target.real.parent})")
        try:
            self.target.real.parent.mkdir(parents=True, exist_ok=True)
            if resume_at is None:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
                self.file = os.fdopen(fd, "wb")
            else:
                self.file = open(tmp, "r+b")
                self.file.truncate(resume_at)
                self.file.seek(resume_at)
            if self.target.exists:
                os.fchmod(self.file.fileno(), stat.S_IMODE(os.stat(self.target.real).st_mode) & 0o777)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write {tmp} ({_describe(e)})") from None
        self._tmp = tmp

    def write(self, data: Any, *, event: str | None = None) -> None:
        """Writes ``data``; an OS error (a full disk) becomes one :class:`OutputError` naming the output.
        ``event``: a fault-injection point of the resume tests (``quantonium.faults``)."""
        try:
            if event is None:
                self.file.write(data)
            else:
                from .faults import write_or_die

                write_or_die(event, self.file, data)
        except OSError as e:
            raise OutputError(f"{self.path}: write failed ({_describe(e)})") from None

    def sync(self) -> None:
        """Flushes and fsyncs what was written so far (a checkpoint)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:
            raise OutputError(f"{self.path}: write failed ({_describe(e)})") from None

    def commit(self) -> Path:
        """Flushes, fsyncs and renames into place (or just flushes a special file)."""
        if self._done:
            return self.path
        try:
            self.file.flush()
            if self.target.direct:
                try:
                    os.fsync(self.file.fileno())
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS, errno.EBADF):
                        raise
                self.file.close()
            else:
                os.fsync(self.file.fileno())
                os.replace(self._tmp, self.target.real)  # the lock is held until the name is gone
                self.file.close()
                _fsync_dir(self.target.real.parent)
        except OSError as e:
            self.abort()
            raise OutputError(f"{self.path}: write failed ({_describe(e)})") from None
        self._done = True
        return self.path

    def abort(self) -> None:
        """Removes the temporary; the target keeps its old content."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        except (OSError, AttributeError):
            pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_bytes(path: str | os.PathLike, data: bytes, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Writes ``data`` to ``path`` by the rules of this module."""
    with AtomicFile(path, inputs=inputs) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` by the rules of this module."""
    return write_bytes(path, text.encode("utf-8"), inputs=inputs)


def _umask() -> int:
    """The process's umask, read without changing it (/proc), or by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - no /proc
    os.umask(mask)
    return mask


def write_plain(path: str | os.PathLike, data: bytes, *, shown_as: str | os.PathLike | None = None) -> Path:
    """Writes a file inside an :class:`AtomicFolder` being filled (the folder is the atomic unit);
    a failure (a full disk) is one :class:`OutputError` naming the file (``shown_as``: its final path)."""
    p = Path(path)
    try:
        with open(p, "xb") as f:
            f.write(data)
    except OSError as e:
        raise OutputError(f"{shown_as or p}: write failed ({_describe(e)})") from None
    return p


_OS_ERROR = re.compile(r"os error (\d+)|code: (\d+)")


def save_safetensors(tensors: dict[str, Any], path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
                     shown_as: str | os.PathLike | None = None) -> Path:
    """``safetensors.torch.save_file`` inside an :class:`AtomicFolder` being filled; its errors (a full
    disk, a file size limit) become one :class:`OutputError` naming the file (``shown_as``: its final
    path) instead of a ``SafetensorError``."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    p = Path(path)
    try:
        save_file(tensors, str(p), metadata=metadata)
    except OSError as e:
        raise OutputError(f"{shown_as or p}: write failed ({_describe(e)})") from None
    except SafetensorError as e:
        msg = str(e)
        m = _OS_ERROR.search(msg)
        if m:
            code = int(m.group(1) or m.group(2))
            reason = _describe(OSError(code, os.strerror(code)))
        else:
            reason = (msg.strip().splitlines() or ["safetensors error"])[0][:200]
        raise OutputError(f"{shown_as or p}: write failed ({reason})") from None
    os.chmod(p, 0o666 & ~_umask())  # safetensors creates its file 0600
    return p


class AtomicFolder:
    """A folder output: fill ``path`` (a temporary folder beside the target), then ``commit()``.

    The commit fsyncs every file and folder inside, renames the temporary
    folder onto the target (an empty folder there is replaced atomically)
    and fsyncs the parent; ``abort()`` removes the temporary folder.
    """

    def __init__(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> None:
        self.target = check_folder(path, inputs=inputs)
        real = self.target.real
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(real.parent)
            while True:
                tmp = real.parent / _temp_name(real)
                try:
                    os.mkdir(tmp, 0o777)
                    break
                except FileExistsError:
                    continue
            self._fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise OutputError(f"{self.target.path}: cannot create a folder in {real.parent} ({_describe(e)})") from None
        _lock(self._fd)
        self.path = tmp
        self._done = False

    def shown(self, inside: str | os.PathLike) -> Path:
        """Where a path inside the temporary folder will be once committed (for messages)."""
        return self.target.path / Path(os.path.realpath(inside)).relative_to(os.path.realpath(self.path))

    def commit(self) -> Path:
        if self._done:
            return self.target.path
        try:
            for root, dirs, files in os.walk(self.path):
                for name in files:
                    fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                _fsync_dir(Path(root))
            os.rename(self.path, self.target.real)
            _fsync_dir(self.target.real.parent)
        except OSError as e:
            self.abort()
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise OutputError(f"{self.target.path}: appeared meanwhile and is not an empty folder") from None
            raise OutputError(f"{self.target.path}: write failed ({_describe(e)})") from None
        os.close(self._fd)
        self._done = True
        return self.target.path

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)

    def __enter__(self) -> AtomicFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
