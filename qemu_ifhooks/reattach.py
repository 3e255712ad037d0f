"""Running VMs put back on their bridge: `qemu-ifhooks up` re-plugs every TAP that ifup
attached (attachments.py has the records), whose VM still runs and which is no longer
on its bridge, as when the bridge was deleted and built again. `status` and `check` show
the same TAPs as detached.

A record's TAP counts only when a TAP of that name and ifindex still exists (else the VM
stopped and the kernel deleted it: the record is dropped) and a process holds it open
(QEMU; found through /proc/PID/fdinfo, as status does, because under libvirt the hook's
parent was the daemon, not QEMU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from .attachments import DIR, forget, parse_record, read_record, remember
from .errors import HookError
from .lock import netns_id

if TYPE_CHECKING:  # status.py reads this module: no cycle at import time
    from .configmodel import Config
    from .netlink import Netlink
    from .status import Holder

GONE = "gone"  # no TAP of that name and ifindex: the VM stopped
UNOWNED = "unowned"  # the TAP exists but no process holds it
ATTACHED = "attached"  # on its bridge
DETACHED = "detached"  # held, on no bridge: what `up` re-plugs
ELSEWHERE = "elsewhere"  # on another master: someone moved it, not ours to move back


@dataclass(frozen=True)
class Attachment:
    tap: str
    ifindex: int
    vlan: int
    bridge: str
    pid: int  # the process that owned the TAP when it was attached

    @property
    def fix(self) -> str:
        return f"qemu-ifhooks up {self.vlan}"


def read_attachments(netns: Optional[int] = None, directory: str = DIR) -> List[Attachment]:
    """The records of this network namespace (or `netns`), by TAP name."""
    prefix = f"{netns_id() if netns is None else netns}-"
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for name in names:
        if not name.startswith(prefix) or name.endswith(".new"):
            continue
        text = read_record(os.path.join(directory, name))
        if text is None:
            continue  # dropped meanwhile
        fields = parse_record(text)
        if fields is not None and fields["tap"] == name[len(prefix):]:
            out.append(Attachment(**fields))
    return out


def state(record: Attachment, index: Optional[int], master: Optional[str],
          held: bool) -> str:
    """Where the record's TAP is: `index` and `master` (a name) of the link of that
    name now (None when there is none); `held`: a process holds it open."""
    if index != record.ifindex:
        return GONE
    if not held:
        return UNOWNED
    if master == record.bridge:
        return ATTACHED
    return ELSEWHERE if master else DETACHED


def detached(records: Sequence[Attachment], links: Dict[str, Tuple[int, Optional[str]]],
             holders: Dict[str, List[Holder]]) -> List[Tuple[Attachment, Tuple[Holder, ...]]]:
    """The records whose TAP is detached, with its holders; `links`: name -> (index,
    master name) of this namespace's links."""
    out = []
    for record in records:
        index, master = links.get(record.tap, (None, None))
        if state(record, index, master, bool(holders.get(record.tap))) == DETACHED:
            out.append((record, tuple(holders[record.tap])))
    return out


def reattach(nl: Netlink, config: Config, bridge: str, trace: Callable[[str], None],
             warn: Callable[[str], None]) -> Tuple[List[str], List[Tuple[str, HookError]]]:
    """Put back the recorded TAPs of `bridge` that are detached, each by the very ifup
    the hook runs (MTU, VLANs and every other port setting included); drop the records
    of TAPs that are gone. Returns what was re-plugged ("tap (holder)") and the TAPs that
    could not be, with why."""
    from .actions import attach
    from .status import tap_holders

    plugged: List[str] = []
    failed: List[Tuple[str, HookError]] = []
    records = [r for r in read_attachments() if r.bridge == bridge]
    holders = tap_holders() if records else {}
    bridge_link = nl.get_link(bridge)
    for record in records:
        link = nl.get_link(record.tap)
        master = None
        if link is not None and link.master:
            master = bridge if bridge_link and link.master == bridge_link.index else "other"
        where = state(record, link.index if link else None, master,
                      bool(holders.get(record.tap)))
        if where in (GONE, UNOWNED):
            forget(record.tap)
            continue
        segment = config.segment(record.vlan)
        if where != DETACHED or segment is None or segment.bridge != bridge:
            continue  # on its bridge; moved by someone; or the config changed since
        try:
            attach(nl, segment, record.tap, trace, warn)
        except HookError as error:
            if nl.get_link(record.tap) is None:  # the VM stopped meanwhile
                forget(record.tap)
            else:
                failed.append((record.tap, error))
            continue
        owner = holders[record.tap][0]  # QEMU, now: under libvirt ifup saw the daemon
        remember(record.tap, record.ifindex, segment.vlan, bridge, owner.pid)
        plugged.append(f"{record.tap} (pid {owner.pid}{f' vm {owner.vm}' if owner.vm else ''})")
    return plugged, failed

