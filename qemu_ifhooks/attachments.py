"""Records of the TAPs ifup attached, so that `qemu-ifhooks up` can put a running VM's
TAP back on its bridge after the bridge was deleted and built again.

One record per TAP under /run/qemu-ifhooks/attached, named after the network
namespace (TAP names are per namespace) and the TAP: its name, ifindex (a new TAP of
the same name is another TAP), segment, bridge and the process that owned it when it
was attached (QEMU, the hook's parent; under libvirt the daemon, which hands the TAP to
QEMU afterwards). Writing is best effort: a record never fails or slows an ifup, and a
read-only or full /run only costs the reattach.

A record is a symbolic link whose target is its text ("tap=tap0 ifindex=7 ..."), as
Emacs keeps its lock files: made and replaced atomically without file data, so
replacing one costs what making one does (on ext4 a rename over a regular file waits
for the new file's data to be allocated, about 0.3 ms here). Readers take regular
files too, as earlier versions wrote them.

This module is on the hook path: `posix`, not `os` (see env.py).
"""

from __future__ import annotations

import posix

from .lock import RUN_DIR, make_run_dir, netns_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional

DIR = f"{RUN_DIR}/attached"
FIELDS = ("tap", "ifindex", "vlan", "bridge", "pid")
MAX_BYTES = 512  # a record is under 100 bytes; anything longer was not written by us


def record_path(tap: str, netns: Optional[int] = None) -> str:
    return f"{DIR}/{netns_id() if netns is None else netns}-{tap}"


def remember(tap: str, ifindex: int, vlan: int, bridge: str, pid: int) -> bool:
    """Write (or replace) the record of `tap`; False when it could not be written."""
    path = record_path(tap)
    temporary = f"{path}.{posix.getpid()}.new"
    text = " ".join(f"{key}={value}" for key, value in
                    zip(FIELDS, (tap, ifindex, vlan, bridge, pid)))  # names have no blanks
    try:
        if read_record(path) == text:
            return True  # a repeated ifup by the same process: nothing to rewrite
        try:
            posix.symlink(text, temporary)
        except FileNotFoundError:  # the first record since boot
            make_run_dir(RUN_DIR)
            make_run_dir(DIR)
            posix.symlink(text, temporary)
        posix.replace(temporary, path)  # readers see the old record or the new one
        return True
    except OSError:
        try:
            posix.unlink(temporary)
        except OSError:
            pass
        return False


def forget(tap: str, netns: Optional[int] = None) -> None:
    """Drop the record of `tap`, if any (best effort, as remember)."""
    try:
        posix.unlink(record_path(tap, netns))
    except OSError:
        pass


def read_record(path: str) -> Optional[str]:
    """The text of a record: a link's target, or an earlier version's file; None when
    it is gone or unreadable."""
    try:
        return posix.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        import errno  # here, not at the top: see nlsocket.py

        if error.errno != errno.EINVAL:  # EINVAL: not a link
            return None
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_NONBLOCK
                        | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        return posix.read(fd, MAX_BYTES).decode("utf-8", "surrogateescape")
    except OSError:
        return None
    finally:
        posix.close(fd)


def parse_record(text: str) -> Optional[Dict[str, object]]:
    """The fields of a record ("key=value" separated by blanks or lines), or None for a
    damaged one."""
    values = dict(word.partition("=")[::2] for word in text.split() if "=" in word)
    if set(values) != set(FIELDS):
        return None
    try:
        return {"tap": values["tap"], "ifindex": int(values["ifindex"]),
                "vlan": int(values["vlan"]), "bridge": values["bridge"],
                "pid": int(values["pid"])}
    except ValueError:
        return None
