"""A cache of the parsed config file, so that a hook start does not import and run
the TOML parser (about 12 ms here, more than everything else the hook does).

The cache holds the parsed document (plain dicts, lists, strings and numbers) in
marshal format, under /run/qemu-ifhooks, with the key it was made for: the config's
path, device, inode, size, mtime and ctime, the format and the Python version. A hook
uses it only when the key matches the config it has just opened, and validates the
document as if freshly parsed, so the cache saves parsing, nothing else.

Never stale: any change to the file (write, replace, chmod, touch) sets its ctime to
the current time, which the kernel does not let anyone set back. A cache is written
only for a file unchanged for RACY_SECONDS, so a later change lands on a later
timestamp even on file systems with coarse ones, and the key no longer matches.

The cache is as trusted as the config itself (marshal data must come from a trusted
writer): it is read only when owned by root (or the caller) and not writable by
group or others, like the config.
"""

from __future__ import annotations

import marshal
import posix  # not os: see env.py
import sys
import time
import zlib

from .lock import RUN_DIR, make_run_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

FORMAT = 1
RACY_SECONDS = 2


def cache_path(config_path: str) -> str:
    # One file per config path; a collision only costs a parse (the path is in the key).
    path = config_path.encode("utf-8", "surrogateescape")
    return f"{RUN_DIR}/config-{zlib.crc32(path):08x}.cache"


def cache_key(config_path: str, st: posix.stat_result) -> tuple:
    return (FORMAT, sys.version_info[:2], config_path, st.st_dev, st.st_ino, st.st_size,
            st.st_mtime_ns, st.st_ctime_ns)


def load(config_path: str, st: posix.stat_result) -> Optional[Dict[str, Any]]:
    """The cached document for the config file with stat `st`, or None."""
    try:
        fd = posix.open(cache_path(config_path), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        own = posix.fstat(fd)
        if own.st_uid not in (0, posix.geteuid()) or own.st_mode & 0o022:
            return None
        key, document = marshal.loads(posix.read(fd, own.st_size + 1))
    except Exception:  # noqa: BLE001 - a damaged or foreign cache is a miss
        return None
    finally:
        posix.close(fd)
    return document if key == cache_key(config_path, st) else None


def store(config_path: str, st: posix.stat_result, document: Dict[str, Any]) -> None:
    """Keep `document`, parsed from the config file with stat `st`, for later hooks.
    Best effort: a hook without write access, or a fresh file, just parses again."""
    now = time.time_ns()
    if now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_SECONDS * 1_000_000_000:
        return
    try:
        data = marshal.dumps((cache_key(config_path, st), document))
    except ValueError:  # a TOML date or time: not worth caching
        return
    path = cache_path(config_path)
    temporary = f"{path}.{posix.getpid()}"
    try:
        make_run_dir(RUN_DIR)
        fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC,
                        0o644)
        try:
            posix.write(fd, data)
        finally:
            posix.close(fd)
        posix.replace(temporary, path)  # concurrent hooks write the same bytes; one wins
    except OSError:
        try:
            posix.unlink(temporary)
        except OSError:
            pass
