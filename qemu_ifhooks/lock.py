"""Per-bridge file locks, so that concurrent VM starts build a bridge once.

Hooks hold the lock shared while they attach; building or tearing down a bridge takes
it exclusive. The lock is keyed on the network namespace as well as the bridge name:
br0 in two namespaces is two bridges.
"""

from __future__ import annotations

import fcntl
import posix  # not os: see env.py

from .env import getenv
from .errors import KernelError, LockTimeout, PermissionDenied

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

RUN_DIR = "/run/qemu-ifhooks"
# <sys/stat.h>, the same on every Linux; stat.py has them as literals too, and
# importing its C half (_stat) costs a hook 0.04 ms.
S_IFMT, S_IFREG = 0o170000, 0o100000
DEFAULT_TIMEOUT = 30.0  # seconds; bridge creation takes milliseconds


def make_run_dir(path: str = RUN_DIR) -> None:
    """The directory of locks and caches, whose parent (/run) always exists."""
    try:
        posix.mkdir(path, 0o755)
    except FileExistsError:
        pass


def netns_id() -> int:
    """This process's network namespace, which keys everything kept per namespace
    (locks, the guards mark, attachment records): br0 in two namespaces is two bridges."""
    return posix.stat("/proc/self/ns/net").st_ino


def _guards_mark() -> str:
    """Present once any TAP of this network namespace was guarded (rules, limits) since
    boot: until then an ifup or ifdown need not look for a killed VM's leftovers, and
    pays nothing for them."""
    return f"{RUN_DIR}/{netns_id()}-guards-used"


def guards_used() -> bool:
    try:
        posix.stat(_guards_mark())
    except OSError:
        return False
    return True


def mark_guards_used() -> None:
    """Best effort: without the mark, leftovers are still swept by `up` and `down`."""
    try:
        make_run_dir()
        posix.close(posix.open(_guards_mark(), posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC, 0o644))
    except OSError:
        pass


def lock_timeout() -> float:
    try:
        return float(getenv("QEMU_IFHOOKS_LOCK_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT


class BridgeLock:
    def __init__(self, bridge: str, timeout: Optional[float] = None):
        self.bridge = bridge
        self.timeout = lock_timeout() if timeout is None else timeout
        self.path = f"{RUN_DIR}/{netns_id()}-{bridge}.lock"
        self.fd = -1

    def __enter__(self) -> "BridgeLock":
        self.fd = self._open()
        return self

    def __exit__(self, *exc) -> None:
        posix.close(self.fd)  # closing releases the lock

    def _open(self) -> int:
        """The lock file, opened read-only (flock needs no more), so that an existing
        lock works on a read-only or full /run; created when missing."""
        flags = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC
        try:
            try:
                fd = posix.open(self.path, flags)
            except FileNotFoundError:
                make_run_dir()
                fd = posix.open(self.path, flags | posix.O_CREAT, 0o644)
        except PermissionError as e:
            raise PermissionDenied(f"cannot open lock {self.path}: {e.strerror}; the hook "
                                   f"must run as root (CAP_NET_ADMIN)") from None
        except OSError as e:
            raise KernelError(f"cannot create lock {self.path}: {e.strerror}; {RUN_DIR} must "
                              f"be a directory root can write to") from None
        if posix.fstat(fd).st_mode & S_IFMT != S_IFREG:
            posix.close(fd)
            raise KernelError(f"cannot use lock {self.path}: not a regular file; remove it")
        return fd

    def remove(self) -> None:
        """Delete the lock file, for a bridge that is gone; the exclusive lock must be
        held. A process waiting on it notices (see _take) and takes a new one."""
        try:
            posix.unlink(self.path)
        except OSError:
            pass

    def shared(self) -> None:
        self._take(fcntl.LOCK_SH, "shared")

    def exclusive(self) -> None:
        self._take(fcntl.LOCK_EX, "exclusive")

    def _take(self, mode: int, what: str) -> None:
        self._flock(mode, what)
        # A lock file removed (remove()) while this process waited locks nothing any more.
        while self._removed():
            posix.close(self.fd)
            self.fd = self._open()
            self._flock(mode, what)

    def _removed(self) -> bool:
        try:
            return posix.stat(self.path).st_ino != posix.fstat(self.fd).st_ino
        except FileNotFoundError:
            return True

    def _flock(self, mode: int, what: str) -> None:
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        # Block, but no longer than the timeout: an alarm interrupts flock(), and its
        # handler raises the timeout. (Imported here: `signal` brings `enum`, which an
        # uncontended hook need not pay for.)
        import signal

        timeout = LockTimeout(f"could not take the {what} lock for {self.bridge} within "
                              f"{self.timeout:g} s ({self.path}); another qemu-ifhooks "
                              f"process holds it")

        def expire(signum, frame):  # noqa: ARG001 - signal handler signature
            raise timeout

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            fcntl.flock(self.fd, mode)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
