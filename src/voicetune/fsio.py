"""The one place for durable files: atomic writes, atomic directory replacement, fsync of a
directory, sha256 of a file, temporary names and their sweeper, and the directory lock.

Every file or folder voicetune writes that a later run trusts goes through here, so the promise
"a crash at any instant leaves the old version or the complete new one" is written once:

- a file is written under a temporary name in the same folder, fsynced, renamed over the target
  (rename is atomic within one file system), and the folder is fsynced so the rename itself
  survives a power cut;
- a folder is replaced by renaming the old one aside first, then the new one in, then removing
  the old one: at no instant is there neither (never delete-then-rename);
- temporary names follow one scheme, `NAME.tmp-<pid>-<n>`, and one sweeper removes them;
- the lock (`DirLock`) is a POSIX record lock, which the kernel drops when its process dies and
  which forked children (DataLoader workers) never inherit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from voicetune.faults import crash_point

log = logging.getLogger("voicetune.fsio")

TEMP_MARK = ".tmp-"
_TEMP_RE = re.compile(r"\.tmp-\d+-\d+$")
_counter = itertools.count(1)


# ---- temporary names ---------------------------------------------------------------------------


def temp_path(target: Path) -> Path:
    """A fresh temporary name beside `target` (same folder, so the final rename is atomic)."""
    target = Path(target)
    return target.with_name(f"{target.name}{TEMP_MARK}{os.getpid()}-{next(_counter)}")


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of `temp_path`'s names."""
    return _TEMP_RE.search(name) is not None


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove what interrupted writes left in `folder` (files and folders with a temporary name).

    Only the holder of the folder's lock may call this: another live writer's temporaries would go.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not is_temp_name(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    if removed:
        fsync_dir(folder)
    return removed


# ---- fsync -------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make the entries of folder `path` (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file written by someone else (a library writing to a path) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under `path` (before a folder is renamed into place)."""
    for folder, _dirs, names in os.walk(path, topdown=False):
        for name in names:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


# ---- files -------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path for a writer that wants a path (torch.save, soundfile, numpy).

    When the block ends without an error, the file is fsynced and renamed onto `target` and the
    folder fsynced; on an error the temporary is removed and `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(target: Path, data: bytes | memoryview, only_if_changed: bool = False) -> bool:
    """Write `data` to `target` atomically; returns False when it held these bytes already and
    `only_if_changed` kept it (and its mtime) as it was."""
    target = Path(target)
    if only_if_changed and target.is_file():
        try:
            if target.stat().st_size == len(data) and target.read_bytes() == bytes(data):
                return False
        except OSError:
            pass
    with atomic_path(target) as tmp:
        with open(tmp, "xb") as handle:
            handle.write(data)
    return True


def atomic_write_text(target: Path, text: str, only_if_changed: bool = False) -> bool:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(target, text.encode("utf-8"), only_if_changed)


def atomic_write_json(target: Path, obj: Any, indent: int | None = 1, only_if_changed: bool = False) -> bool:
    """`atomic_write_bytes` of `obj` as sorted, indented JSON with a final newline."""
    text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_text(target, text, only_if_changed)


# ---- folders -----------------------------------------------------------------------------------


def commit_dir(tmp: Path, target: Path) -> None:
    """Rename a finished temporary folder to `target`, which must not exist, and fsync the parent.

    The caller has made the folder's content durable (fsync_tree, or its own fsyncs).
    """
    if target.exists():
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(tmp, target)
    fsync_dir(target.parent)


def replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` (same parent, content already durable) in place of `target`, never
    deleting the old one before the new one is in place.

    Linux swaps the two names in one atomic step (renameat2 RENAME_EXCHANGE): a crash leaves the
    old folder or the new one under `target`, and the other under a temporary name that the
    sweeper removes. Where the exchange is not supported, the old folder is renamed aside, then
    the new one in (a crash between the two leaves `target` missing and the old one aside).
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        fsync_dir(target.parent)
        return
    if _exchange(new, target):
        old = new  # the exchange left the old folder under the temporary name
        fsync_dir(target.parent)
    else:
        old = temp_path(target)
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)  # put the old one back
            raise
        fsync_dir(target.parent)
    crash_point("replace_dir.swapped")
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder; when the block succeeds, its files are fsynced and it replaces
    `target` (see `replace_dir`). On an error the temporary folder is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def move(source: Path, target: Path) -> Path:
    """Rename `source` to `target` (which must not exist) durably: both folders are fsynced."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)
    return target


def remove_tree(path: Path) -> None:
    """Delete a folder so that a crash mid-delete leaves a temporary name (swept at the next
    start), never a half-deleted folder under its real name."""
    path = Path(path)
    doomed = temp_path(path)
    os.rename(path, doomed)
    fsync_dir(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name-2`, `-3`... the first that does not exist."""
    candidate, n = Path(folder) / name, 1
    while candidate.exists():
        n += 1
        candidate = Path(folder) / f"{name}-{n}"
    return candidate


# ---- content hashes ----------------------------------------------------------------------------


def sha256_file(
    path: Path, chunk_bytes: int = 8 * 1024 * 1024, on_chunk: Callable[[memoryview], None] | None = None
) -> str:
    """Hex sha256 of a file, read in chunks (constant memory whatever the file's size)."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            if on_chunk is not None:
                on_chunk(view[:n])
    return digest.hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex sha256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()


# ---- the directory lock ------------------------------------------------------------------------

# Record locks belong to a process, and closing ANY descriptor of the file drops them: a second
# DirLock of the same file in the same process would silently release the first when closed.
# This registry (by device and inode) refuses that instead.
_held: dict[tuple[int, int], DirLock] = {}


class LockedError(OSError):
    """Another live process holds the lock; `holder` is what it recorded (pid, host, started)."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        super().__init__(errno.EAGAIN, f"{path} is held by pid {holder.get('pid', '?')}")
        self.path = path
        self.holder = holder


class DirLock:
    """Exclusive lock of a folder through a file in it (e.g. RUN/LOCK), with the holder's pid.

    Why POSIX record locks (`fcntl.lockf`, F_SETLK) and not flock or open-file-description locks:
    flock and OFD locks belong to the open file description, which a fork shares with the child,
    so DataLoader workers forked by the trainer keep the lock after the trainer is killed, until
    they notice their parent is gone; a restart in that window is refused. A record lock belongs
    to the process: fork does not pass it on and the kernel drops it the instant the process
    dies, however it dies. Its one trap (closing any descriptor of the file drops it) is avoided
    by opening the file once per process (see `_held`). Record locks also work over NFS.
    """

    def __init__(self, folder: Path, name: str = "LOCK"):
        self.path = Path(folder) / name
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self._pid = 0
        self.previous_holder: dict[str, Any] | None = None  # set when a dead holder's lock was taken over

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirLock:
        """Take the lock or raise LockedError naming the live holder. Never waits."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in _held:
            os.close(fd)  # never reached for a lock held here: _held keeps us from closing its file
            raise LockedError(self.path, {"pid": os.getpid(), "host": socket.gethostname(), "started": "this process"})
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(self.path, holder) from None
        holder = _read_holder(fd)
        if holder.get("pid"):
            self.previous_holder = holder
            log.warning(
                "took over the lock %s left by pid %s on %s, which is no longer running",
                self.path,
                holder.get("pid"),
                holder.get("host"),
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
        os.fsync(fd)
        self._fd, self._key, self._pid = fd, key, os.getpid()
        _held[key] = self
        return self

    def release(self) -> None:
        """Empty the file (a clean release leaves no holder to report) and unlock."""
        if self._fd is None:
            return
        # A forked child that inherited the object must not empty the parent's lock file.
        if self._pid == os.getpid() and self._key is not None and _held.get(self._key) is self:
            os.ftruncate(self._fd, 0)
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            del _held[self._key]
        os.close(self._fd)
        self._fd = self._key = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}  # an older pid-only file says nothing usable
