"""A cache of the validated config, so that a hook start loads neither the TOML parser
(about 12 ms here, more than everything else the hook does) nor the schema.

The cache holds the Config that config.parse_config made (its records as plain lists,
tuples, strings and numbers) in marshal format, under /run/qemu-ifhooks, with the key
it was made for: the config's path, device, inode, size, mtime and ctime, the size and
mtime of each module whose code decides the result (VALIDATED_BY), the format and the
Python version. A hook uses it only when the key matches the config it has just opened
and checked, and the code it runs.

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

from .lock import RUN_DIR, make_run_dir
from .record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from .configmodel import Config

FORMAT = 2  # 1 held the parsed TOML document
RACY_SECONDS = 2
PACKAGE = __name__.rpartition(".")[0]
DIRECTORY = __file__.rpartition("/")[0]
# The modules whose code turns a document into a Config: an upgrade or an edit of any
# of them makes every cache a miss. (tests/test_configcache.py checks the list.)
VALIDATED_BY = ("config", "configmodel", "ifname", "portconfig", "record", "vxlan")


def cache_path(config_path: str) -> str:
    # One file per config path; a collision only costs a parse (the path is in the key).
    return f"{RUN_DIR}/config-{fnv1a(config_path.encode('utf-8', 'surrogateescape')):08x}.cache"


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a: a checksum of a few dozen bytes without importing zlib (a module
    initialised for every hook start)."""
    checksum = 0x811C9DC5
    for byte in data:
        checksum = ((checksum ^ byte) * 0x01000193) & 0xFFFFFFFF
    return checksum


def cache_key(config_path: str, st: posix.stat_result) -> tuple:
    return (FORMAT, sys.version_info[:2], config_path, st.st_dev, st.st_ino, st.st_size,
            st.st_mtime_ns, st.st_ctime_ns, code_key())


def code_key() -> tuple:
    """Size and mtime of each module in VALIDATED_BY (None for one that cannot be read:
    such a key never matches one that was written)."""
    key = []
    for name in VALIDATED_BY:
        try:
            info = posix.stat(f"{DIRECTORY}/{name}.py")
            key.append((info.st_size, info.st_mtime_ns))
        except OSError:
            key.append(None)
    return tuple(key)


def load(config_path: str, st: posix.stat_result) -> Optional[Config]:
    """The cached Config of the config file with stat `st`, or None."""
    try:
        fd = posix.open(cache_path(config_path), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        own = posix.fstat(fd)
        if own.st_uid not in (0, posix.geteuid()) or own.st_mode & 0o022:
            return None
        key, plain = marshal.loads(posix.read(fd, own.st_size + 1))
        if key != cache_key(config_path, st):
            return None
        return decode(plain)
    except Exception:  # noqa: BLE001 - a damaged or foreign cache is a miss
        return None
    finally:
        posix.close(fd)


def store(config_path: str, st: posix.stat_result, config: Config) -> None:
    """Keep `config`, made from the config file with stat `st`, for later hooks.
    Best effort: a hook without write access, or a fresh file, just parses again."""
    now = time.time_ns()
    if now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_SECONDS * 1_000_000_000:
        return
    try:
        data = marshal.dumps((cache_key(config_path, st), encode(config)))
    except ValueError:  # a value marshal does not take: not worth caching
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


def encode(value: Any) -> Any:
    """`value` in types marshal takes: a Record as a list [module:class, fields...],
    tuples item by item, plain values as they are; ValueError for anything else."""
    if isinstance(value, Record):
        kind = type(value)
        return [f"{kind.__module__}:{kind.__qualname__}"] + \
            [encode(getattr(value, name)) for name in kind.__slots__]
    if isinstance(value, tuple):
        return tuple(encode(item) for item in value)
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise ValueError(f"not cached: {type(value).__name__}")


def decode(value: Any) -> Any:
    """What `encode` took; a Record's module is imported when it is not yet."""
    if isinstance(value, list):
        module, _, name = value[0].partition(":")
        if module.rpartition(".")[0] != PACKAGE:
            raise ValueError(f"not one of {PACKAGE}'s records: {value[0]}")
        kind = getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name)
        return kind(*[decode(item) for item in value[1:]])
    if isinstance(value, tuple):
        return tuple(decode(item) for item in value)
    return value
