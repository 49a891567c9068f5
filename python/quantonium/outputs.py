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
7. **Large files stream** (:class:`StreamFile`, inside an :class:`AtomicFolder`):
   written front to back by a writer thread while the caller produces the
   next bytes, with direct I/O where the filesystem allows it, so memory is
   a few staging buffers and the final fsync has little left to do.

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
    "DIRECT_ALIGN",
    "DIRECT_IO",
    "STALE_AFTER",
    "STREAM_BUFFERS",
    "STREAM_CHUNK",
    "TEMP_SUFFIX",
    "AtomicFile",
    "AtomicFolder",
    "OutputError",
    "StreamFile",
    "Target",
    "check_file",
    "check_folder",
    "clean_stale",
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


#: The most bytes a :class:`StreamFile` writes per call, and how many of its staging buffers there are.
STREAM_CHUNK = 16 << 20
STREAM_BUFFERS = 4
#: Alignment of direct I/O (buffer address, file offset and length): a page, which every block size divides.
DIRECT_ALIGN = 4096
#: Whether a :class:`StreamFile` tries direct I/O (``O_DIRECT``) by default; the environment variable
#: ``QUANTONIUM_DIRECT_IO=0`` turns it off (buffered writes, the file left in the page cache).
DIRECT_IO = os.environ.get("QUANTONIUM_DIRECT_IO", "1").strip().lower() not in ("0", "no", "false", "off")


class StreamFile:
    """A large file inside an :class:`AtomicFolder` being filled, written front to back while the caller
    produces the next bytes; the folder stays the atomic unit (its commit fsyncs and renames).

    :meth:`write` copies the bytes into page-aligned staging buffers (``STREAM_BUFFERS`` of at most
    ``STREAM_CHUNK`` bytes: :meth:`staging_bytes`, whatever the file's size); a writer thread writes each
    full buffer with ``os.pwrite`` while the caller fills the next, so producing the bytes and writing
    them overlap, and at most the staging buffers are held here.

    - ``direct`` (default :data:`DIRECT_IO`, where the OS has ``O_DIRECT`` and the filesystem accepts
      it): the writes bypass the page cache, so the bytes go to the device as they are produced, the
      machine's cache does not fill with gigabytes of dirty pages, and the final fsync has nothing left
      to write back. The last, partial block is written padded and the file truncated to ``size``.
    - Otherwise (tmpfs, a filesystem that refuses ``O_DIRECT``, ``direct=False``) the writes are
      buffered, and each written buffer's writeback is started at once (``posix_fadvise`` with
      ``POSIX_FADV_DONTNEED``, which starts writing dirty pages back and drops the clean ones), so the
      final fsync waits for the tail, not for the whole file.

    :meth:`close` checks that exactly ``size`` bytes were written, then fsyncs (``sync_seconds``: how
    long that took). A failed write (a full disk, a file size limit) is one :class:`OutputError` naming
    the file (``shown_as``: its final path), raised by the next :meth:`write` or by :meth:`close`;
    :meth:`abort` stops the writer thread and closes the file (the folder's abort removes it).
    """

    def __init__(self, path: str | os.PathLike, size: int, *, shown_as: str | os.PathLike | None = None,
                 direct: bool | None = None) -> None:
        import queue
        import threading

        self.path = Path(path)
        self.shown = Path(shown_as) if shown_as is not None else self.path
        self.size = int(size)
        self.chunk = self.chunk_size(self.size)
        self.written = 0
        self.sync_seconds = 0.0
        self._error: Exception | None = None
        self._closed = False
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise OutputError(f"{self.shown}: cannot be created ({_describe(e)})") from None
        import mmap

        import numpy as np

        try:
            self.direct = bool(DIRECT_IO if direct is None else direct) and self._set_direct(True)
            self._maps = [mmap.mmap(-1, self.chunk) for _ in range(STREAM_BUFFERS)]  # page-aligned, as O_DIRECT needs
        except BaseException:
            os.close(self._fd)
            raise
        self._views = [np.frombuffer(m, np.uint8) for m in self._maps]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(STREAM_BUFFERS):
            self._free.put(i)
        self._full: queue.Queue = queue.Queue()
        self._buf = self._free.get()
        self._fill = 0
        self._offset = 0  # file offset of the current buffer
        self._thread = threading.Thread(target=self._run, name="quantonium-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def chunk_size(size: int) -> int:
        """Bytes per staging buffer for a file of ``size`` bytes: a sixteenth of it rounded up to a page,
        at most :data:`STREAM_CHUNK` (a small file does not need 64 MiB of buffers)."""
        per = -(-max(size, 1) // 16)
        return min(STREAM_CHUNK, -(-per // DIRECT_ALIGN) * DIRECT_ALIGN)

    @classmethod
    def staging_bytes(cls, size: int) -> int:
        """The memory a :class:`StreamFile` of ``size`` bytes holds: its staging buffers."""
        return STREAM_BUFFERS * cls.chunk_size(size)

    def _set_direct(self, on: bool) -> bool:
        """Turns O_DIRECT on or off for the open file; False when the OS or the filesystem refuses it."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return False
        try:
            fl = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, (fl | flag) if on else (fl & ~flag))
        except OSError:
            return False
        return on

    # --- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            i, n, off = item
            try:
                if self._error is None:
                    self._pwrite(i, n, off)
            except Exception as e:  # kept for the caller; the thread goes on, returning buffers, until stopped
                self._error = e
            finally:
                self._free.put(i)

    def _pwrite(self, i: int, n: int, off: int) -> None:
        with memoryview(self._maps[i]) as view:  # released even when a write fails
            done = 0
            if self.direct:
                n_io = -(-n // DIRECT_ALIGN) * DIRECT_ALIGN  # the last block padded (the file is truncated at close)
                try:
                    while done < n_io:
                        k = os.pwrite(self._fd, view[done:n_io], off + done)
                        if k <= 0:
                            raise OSError(errno.EIO, "short write")
                        done += k
                        if done % DIRECT_ALIGN and done < n_io:
                            break  # a short write left an unaligned rest
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                if done >= n_io:
                    return
                self.direct = self._set_direct(False)  # refused at write though accepted at open, or a short write
                done = min(done, n)
            self._pwrite_buffered(view, done, n, off)

    def _pwrite_buffered(self, view: memoryview, a: int, b: int, off: int) -> None:
        while a < b:
            k = os.pwrite(self._fd, view[a:b], off + a)
            if k <= 0:
                raise OSError(errno.EIO, "short write")
            a += k
        if hasattr(os, "posix_fadvise") and b:
            try:  # start the writeback of what was just written (and drop what is clean)
                os.posix_fadvise(self._fd, off, b, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass

    # --- the caller's side -----------------------------------------------------------------
    def _raise(self) -> None:
        e = self._error
        if e is not None:
            reason = _describe(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
            raise OutputError(f"{self.shown}: write failed ({reason})") from None

    def _hand_over(self) -> None:
        """Gives the current buffer to the writer thread and takes a free one (waiting for it)."""
        self._full.put((self._buf, self._fill, self._offset))
        self._offset += self._fill
        self._fill = 0
        self._buf = self._free.get()
        self._raise()

    def write(self, data: Any) -> None:
        """Appends ``data`` (bytes or a C-contiguous array; copied, so it may be freed on return)."""
        import numpy as np

        if self._closed:
            raise ValueError(f"{self.shown}: write to a closed StreamFile")
        self._raise()
        src = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if self.written + src.size > self.size:
            raise ValueError(f"{self.shown}: {self.written + src.size} bytes written, more than the {self.size} announced")
        pos = 0
        while pos < src.size:
            k = min(self.chunk - self._fill, src.size - pos)
            self._views[self._buf][self._fill : self._fill + k] = src[pos : pos + k]  # numpy copies without the GIL
            self._fill += k
            pos += k
            if self._fill == self.chunk:
                self._hand_over()
        self.written += src.size

    def close(self) -> Path:
        """Writes what is left, checks the size, fsyncs and closes the file."""
        if self._closed:
            return self.path
        if self.written != self.size:
            self.abort()
            raise ValueError(f"{self.shown}: {self.written} bytes written, {self.size} announced")
        try:
            if self._fill:
                self._full.put((self._buf, self._fill, self._offset))
                self._offset += self._fill
                self._fill = 0
            self._stop()
            self._raise()
            if os.fstat(self._fd).st_size != self.size:  # the padding of the last direct write
                os.ftruncate(self._fd, self.size)
            t0 = time.perf_counter()
            os.fsync(self._fd)
            self.sync_seconds = time.perf_counter() - t0
        except OSError as e:
            self.abort()
            raise OutputError(f"{self.shown}: write failed ({_describe(e)})") from None
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.path

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._full.put(None)
            self._thread.join()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        self._views = []
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # a view still held by a traceback: freed with it
                pass
        self._maps = []

    def abort(self) -> None:
        """Stops the writer thread and closes the file (what was written stays, for the folder's abort)."""
        if self._closed:
            return
        self._error = self._error or OSError(errno.ECANCELED, "aborted")  # the thread skips what is queued
        self._stop()
        self._release()

    def __enter__(self) -> StreamFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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
