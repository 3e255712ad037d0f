"""What the hooks and the admin commands do against the kernel: observe, plan, apply,
verify. Shared by `hook.py` (ifup/ifdown) and `admin.py` (up/down)."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from .apply import Executor, verify_attached
from .config import Segment
from .errors import PermissionDenied, UnavailableError
from .lock import BridgeLock
from .netlink import Link, Netlink
from .plan import (check_offloads, plan_attach, plan_bridge, plan_detach, plan_teardown,
                   require_supported, require_tap, uplink_needs_attaching)

Trace = Callable[[str], None]


def machine_id() -> bytes:
    try:
        with open("/etc/machine-id", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


def observe(nl: Netlink, segment: Segment) -> Tuple[Optional[Link], Optional[Link], List[str]]:
    """The segment's bridge, its uplink, and the uplink's global addresses when they
    matter (only when the uplink is about to be enslaved)."""
    bridge = nl.get_link(segment.bridge)
    uplink = nl.get_link(segment.uplink) if segment.uplink else None
    addresses: List[str] = []
    if uplink is not None and uplink_needs_attaching(uplink, bridge):
        addresses = nl.global_addresses(uplink.index)
    return bridge, uplink, addresses


def check_uplink_offloads(segment: Segment, uplink: Optional[Link],
                          warn: Callable[[str], None]) -> None:
    if uplink is None or segment.offload_check == "off":
        return
    from .ethtool import read_offloads

    offloads = read_offloads(uplink.name)
    warning = check_offloads(segment, uplink.name, offloads.gro, offloads.lro)
    if warning:
        warn(warning)


def ensure_bridge(nl: Netlink, segment: Segment, lock: BridgeLock, trace: Trace,
                  warn: Callable[[str], None], create: Optional[bool] = None) -> Link:
    """Make the bridge exist with its uplink, up; return it. Leaves `lock` held (shared,
    or exclusive if anything had to be built) so the bridge cannot go away meanwhile.
    `create` overrides the segment's setting."""
    require_supported(segment)
    lock.shared()
    bridge, uplink, addresses = observe(nl, segment)
    check_uplink_offloads(segment, uplink, warn)
    if plan_bridge(segment, bridge, uplink, addresses, create=create).ops:
        # Build under the exclusive lock, after looking again: a concurrent hook may
        # have built it while we waited.
        lock.exclusive()
        bridge, uplink, addresses = observe(nl, segment)
        plan = plan_bridge(segment, bridge, uplink, addresses, machine_id(), create)
        Executor(nl, (bridge, uplink), trace).apply(plan.ops)
        bridge = nl.get_link(segment.bridge)
        if bridge is None:
            raise UnavailableError(f"bridge {segment.bridge} disappeared after creation")
    assert bridge is not None  # plan_bridge raises when it is missing and not creatable
    return bridge


def attach(nl: Netlink, segment: Segment, tap: str, trace: Trace,
           warn: Callable[[str], None]) -> None:
    link = nl.get_link(tap)
    if link is None:
        raise UnavailableError(f"{tap} does not exist (QEMU creates it before running the hook)")
    require_tap(link)  # before anything else: never build or enslave for a non-TAP
    with BridgeLock(segment.bridge) as lock:
        bridge = ensure_bridge(nl, segment, lock, trace, warn)
        Executor(nl, (link, bridge), trace).apply(plan_attach(segment, link, bridge).ops)
        verify_attached(nl, tap, bridge)


def detach(nl: Netlink, segment: Segment, tap: str, trace: Trace,
           note: Callable[[str], None]) -> None:
    link = nl.get_link(tap)
    plan = plan_detach(segment, link, nl.get_link(segment.bridge) if link else None)
    for message in plan.notes:
        note(message)
    try:
        Executor(nl, (link,), trace).apply(plan.ops)
    except PermissionDenied:
        # QEMU ran with -runas: nothing is left to undo, the kernel removes the port
        # when QEMU closes the TAP right after this script.
        note("no CAP_NET_ADMIN (QEMU dropped privileges); the kernel detaches the TAP "
             "when QEMU closes it")
    except UnavailableError:
        note("disappeared while being detached")


def teardown(nl: Netlink, segment: Segment, force: bool, trace: Trace) -> bool:
    """Delete the segment's bridge; False when there was none."""
    with BridgeLock(segment.bridge) as lock:
        lock.exclusive()
        bridge = nl.get_link(segment.bridge)
        if bridge is None:
            return False
        ports = nl.list_links(master=bridge.index)
        plan = plan_teardown(segment, bridge, ports, force)
        Executor(nl, [bridge] + ports, trace).apply(plan.ops)
        return True
