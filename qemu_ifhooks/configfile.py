"""The config file: where it is, the checks it must pass, and reading it into a Config.

The thin edge of config.py. A hook reads the validated Config from the cache
(configcache.py) while the file is unchanged; only on a miss are the TOML parser and
config.py's schema loaded. The file and its directories are checked on every read.

This module is on the hook path: `posix`, not `os` (see env.py).
"""

from __future__ import annotations

import posix  # not os: see env.py

from . import configcache
from .env import getenv
from .errors import ConfigError, PermissionDenied

S_IFMT, S_IFREG, S_ISVTX = 0o170000, 0o100000, 0o1000  # <sys/stat.h>: see lock.py

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

    from .configmodel import Config

DEFAULT_PATH = "/etc/qemu-ifhooks/qemu-ifhooks.toml"
ENV_PATH = "QEMU_IFHOOKS_CONFIG"
# What reaches the TOML parser is bounded (config.parse_toml says why); a larger file is
# not read whole.
MAX_CONFIG_BYTES = 256 * 1024


def config_path(explicit: Optional[str] = None) -> str:
    return explicit or getenv(ENV_PATH) or DEFAULT_PATH


def load_config(explicit: Optional[str] = None) -> Config:
    return read_config(config_path(explicit))


def read_config(path: str) -> Config:
    """The file's Config: from the cache when it has one for this very file (as just
    opened and checked: the checks apply to the very file that is read), else parsed,
    validated and cached."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and QEMU waits
        # for the hook with no timeout. It changes nothing for a regular file.
        fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        with open(fd, "rb") as f:
            st = posix.fstat(fd)
            check_secure(path, st)
            check_directories(path)
            cached = configcache.load(path, st)
            if cached is not None:
                return cached
            data = f.read(MAX_CONFIG_BYTES + 1)
            unchanged = _same_file_state(st, posix.fstat(fd))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; write one (see qemu-ifhooks.toml(5)) "
                          f"or point {ENV_PATH} at it") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    from .config import parse_config, parse_toml

    config = parse_config(parse_toml(path, data), path)
    if unchanged:  # else the bytes read may not be the ones the stat describes
        configcache.store(path, st, config)
    return config


def _same_file_state(a: posix.stat_result, b: posix.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def check_secure(path: str, st: posix.stat_result) -> None:
    """Refuse a config that someone other than root could have written (like sshd's
    StrictModes): it decides which interfaces a root hook enslaves."""
    if st.st_mode & S_IFMT != S_IFREG:
        raise ConfigError(f"{path}: not a regular file")
    if st.st_uid not in (0, posix.geteuid()):
        raise PermissionDenied(f"{path}: insecure: owned by uid {st.st_uid}, not root; "
                               f"run 'chown root: {path}'")
    if st.st_mode & 0o022:
        raise PermissionDenied(f"{path}: insecure: writable by group or others "
                               f"(mode {st.st_mode & 0o7777:04o}); run 'chmod go-w {path}'")


def check_directories(path: str) -> None:
    """Refuse a config in a directory that others could write to (as sshd's StrictModes
    does): whoever can write there can replace the file. The sticky bit of a directory
    like /tmp keeps others from replacing root's files in it. Each directory of the
    path is checked as the path reaches it (through symbolic links)."""
    absolute = path if path.startswith("/") else f"{posix.getcwd()}/{path}"
    directory = absolute.rpartition("/")[0] or "/"
    while True:
        st = posix.stat(directory)
        sticky = st.st_mode & S_ISVTX and st.st_uid == 0
        if st.st_uid not in (0, posix.geteuid()) or (st.st_mode & 0o022 and not sticky):
            owner = f"owned by uid {st.st_uid}" if st.st_uid not in (0, posix.geteuid()) \
                else f"writable by group or others (mode {st.st_mode & 0o7777:04o})"
            raise PermissionDenied(f"{path}: insecure: its directory {directory} is {owner}; "
                                   f"keep the config where only root can write")
        if directory == "/":
            return
        directory = directory.rpartition("/")[0] or "/"
