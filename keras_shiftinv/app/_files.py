"""Files written safely: an artifact appears whole or not at all, and a folder has
one writer at a time.

- `atomic_path(path)`: write to a temporary name beside `path`, renamed into place
  (`os.replace`, atomic within a file system) once written: a kill or a full disk
  leaves the previous file, never a truncated one.
- `FolderLock(folder, ...)` / `FileLock(lock_path, ...)`: a lock file created with
  `O_EXCL` holding the owner's pid and host; a second writer gets a `ValueError`
  naming the owner. A lock whose process is gone (killed) is stale: it is taken
  over.
"""

import contextlib
import os
import socket
import time

# The lock file of a folder (a run folder, an export base, a report folder).
LOCK_NAME = ".keras-shiftinv.lock"
# A lock file still empty after this long lost its owner between creating and
# writing it.
_EMPTY_LOCK_SECONDS = 30


def temporary_path(path):
    """Where `atomic_path` writes `path` first: beside it, with its extension (Keras
    and matplotlib pick the format from it)."""
    stem, ext = os.path.splitext(os.fspath(path))
    return f"{stem}.tmp{ext}"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write `path` to; renames it to `path` when the
    block ends without error, deletes it otherwise."""
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as temporary, open(temporary, "w") as f:
        f.write(text)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _owner(lock_path):
    """`(pid, host)` of a lock file, `(None, None)` while empty or unreadable."""
    try:
        with open(lock_path) as f:
            pid, host = f.read().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None, None


def _stale(lock_path):
    pid, host = _owner(lock_path)
    if pid is None:
        try:
            age = time.time() - os.path.getmtime(lock_path)
        except OSError:
            return True  # gone meanwhile
        return age > _EMPTY_LOCK_SECONDS
    # A process of another machine (a shared file system) cannot be checked.
    return host == socket.gethostname() and not _alive(pid)


class FileLock:
    """Holds the lock file `lock_path` while the `with` block runs.

    Args:
        lock_path: the lock file.
        what: what is locked, for the message ("the run folder 'runs/x'").
        option: the option that named it ("--out").

    Raises:
        ValueError: another live process holds the lock.
    """

    def __init__(self, lock_path, what, option):
        self.path = os.fspath(lock_path)
        self.what, self.option = what, option

    def __enter__(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if _stale(self.path):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                pid, host = _owner(self.path)
                raise ValueError(
                    f"{self.what} ({self.option}) is being written by another "
                    f"process (pid {pid} on {host}, lock file {self.path}): wait "
                    f"for it to end or give another {self.option}. If that process "
                    "is gone, delete the lock file."
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            return self
        raise ValueError(f"Could not take the lock file {self.path} ({self.option}).")

    def __exit__(self, *exc):
        if _owner(self.path)[0] == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


class FolderLock(FileLock):
    """`FileLock` of the folder `folder` (its file `LOCK_NAME`), creating the folder
    if needed; folders it created are removed again if they end empty (an error
    before anything was written leaves nothing behind)."""

    def __init__(self, folder, what, option):
        self.folder = os.path.abspath(os.fspath(folder))
        super().__init__(os.path.join(self.folder, LOCK_NAME), what, option)

    def __enter__(self):
        self._created = []
        path = self.folder
        while not os.path.isdir(path):
            self._created.append(path)
            path = os.path.dirname(path)
        os.makedirs(self.folder, exist_ok=True)
        try:
            return super().__enter__()
        except BaseException:
            self._remove_created()
            raise

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._remove_created()

    def _remove_created(self):
        for path in self._created:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                return
