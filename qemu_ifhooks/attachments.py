"""Records of the TAPs ifup attached, so that `qemu-ifhooks up` can put a running VM's
TAP back on its bridge after the bridge was deleted and built again.

One small text file per TAP under /run/qemu-ifhooks/attached, named after the network
namespace (TAP names are per namespace) and the TAP: its name, ifindex (a new TAP of
the same name is another TAP), segment, bridge and the process that owned it when it
was attached (QEMU, the hook's parent; under libvirt the daemon, which hands the TAP to
QEMU afterwards). Writing is best effort: a record never fails or slows an ifup, and a
read-only or full /run only costs the reattach.

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
    text = "".join(f"{key}={value}\n" for key, value in
                   zip(FIELDS, (tap, ifindex, vlan, bridge, pid)))
    try:
        make_run_dir(RUN_DIR)
        make_run_dir(DIR)
        fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL
                        | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o644)
        try:
            written = posix.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            posix.close(fd)
        if written != len(text.encode("utf-8", "surrogateescape")):
            raise OSError("short write")  # a full /run: no half records
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


def parse_record(text: str) -> Optional[Dict[str, object]]:
    """The fields of a record, or None for a damaged one."""
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    if set(values) != set(FIELDS):
        return None
    try:
        return {"tap": values["tap"], "ifindex": int(values["ifindex"]),
                "vlan": int(values["vlan"]), "bridge": values["bridge"],
                "pid": int(values["pid"])}
    except ValueError:
        return None
