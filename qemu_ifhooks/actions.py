"""What the hooks and the admin commands do against the kernel: observe, plan, apply,
verify. Shared by `hook.py` (ifup/ifdown) and `admin.py` (up/down)."""

from __future__ import annotations

import posix  # not os: see env.py

from .apply import Executor, verify_attached
from .errors import PermissionDenied, UnavailableError
from .lock import BridgeLock, guards_used
from .netlink import Link, Netlink
from .ops import Op
from .plan import (check_offloads, plan_attach, plan_bridge, plan_detach, require_not_elsewhere,
                   require_tap, uplink_needs_attaching)
from .record import Record

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence

    from .bridgevlan import BridgeVlan
    from .configmodel import Segment
    from .plan import Plan
    from .portconfig import Port
    from .portsecurity import Rule

    Trace = Callable[[str], None]


def machine_id() -> bytes:
    try:
        with open("/etc/machine-id", "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


class Scene(Record):
    """What plan_bridge looks at: the segment's links as the kernel has them."""

    __slots__ = (
        "bridge",
        "uplink",
        "vlan_port",  # a classic segment's <uplink>.<tag>, when it exists
        "addresses",  # global addresses of the link about to join the bridge
        "uplink_vlans",  # the uplink's BridgeVlans, on a VLAN-aware bridge; else None
        "vxlan",  # a VXLAN segment's vxlan.VxlanScene; else None
    )
    _defaults = {"vxlan": None}

    def plan(self, segment: Segment, machine_id: bytes = b"",
             create: Optional[bool] = None) -> Plan:
        return plan_bridge(segment, self.bridge, self.uplink, self.addresses, machine_id,
                           create, vlan_port=self.vlan_port, uplink_vlans=self.uplink_vlans,
                           vxlan=self.vxlan)

    def links(self) -> list:
        """Every link observed, for the Executor (their state before a run)."""
        vxlan = self.vxlan
        return [self.bridge, self.uplink, self.vlan_port] + (
            [vxlan.port.link if vxlan.port else None, vxlan.underlay] if vxlan else [])


def observe(nl: Netlink, segment: Segment) -> Scene:
    """The segment's bridge and uplink port; the port's global addresses only when it
    is about to be enslaved, and its VLANs only on a VLAN-aware bridge it is part of."""
    bridge = nl.get_link(segment.bridge)
    uplink = nl.get_link(segment.uplink) if segment.uplink else None
    vlan_port = nl.get_link(segment.uplink_port) if segment.classic and uplink else None
    port = vlan_port if segment.classic else uplink
    addresses: List[str] = []
    uplink_vlans = None
    if port is not None and uplink_needs_attaching(port, bridge):
        from .linkbuild import global_addresses  # only for a port about to be enslaved

        addresses = global_addresses(nl, port.index)
    elif port is not None and segment.vlan_aware:
        from .bridgevlan import bridge_vlans  # only VLAN-aware bridges load it

        uplink_vlans = bridge_vlans(nl, port.index)
    vxlan = observe_vxlan(nl, segment) if segment.vxlan is not None else None
    return Scene(bridge, uplink, vlan_port, addresses, uplink_vlans, vxlan)


def observe_vxlan(nl: Netlink, segment: Segment):
    """A VXLAN segment's link, underlay and flood list; the host's addresses only when
    the link is to be created (its `local` must be one of them)."""
    from .vxlan import VxlanScene
    from .vxlannl import flood_list, get_vxlan, host_addresses

    vx = segment.vxlan
    port = get_vxlan(nl, vx.port)
    static = not vx.evpn and not vx.group
    return VxlanScene(port, nl.get_link(vx.dev),
                      flood_list(nl, port.link.index) if port and static else (),
                      host_addresses(nl) if port is None else ())


def check_uplink_offloads(segment: Segment, scene: Scene, warn: Callable[[str], None]) -> None:
    """The uplink's receive offloads, and those of a classic segment's subinterface."""
    if segment.offload_check == "off":
        return
    from .ethtool import read_offloads

    for link in (scene.uplink, scene.vlan_port):
        if link is not None:
            offloads = read_offloads(link.name)
            warning = check_offloads(segment, link.name, offloads.gro, offloads.lro)
            if warning:
                warn(warning)


def tap_vlans(nl: Netlink, segment: Segment, tap: Link, bridge: Link) -> List[BridgeVlan]:
    """The VLANs of a TAP already on a VLAN-aware bridge (a repeated ifup)."""
    if segment.vlan_aware and tap.master == bridge.index:
        from .bridgevlan import bridge_vlans

        return bridge_vlans(nl, tap.index)
    return []


def ensure_bridge(nl: Netlink, segment: Segment, lock: BridgeLock, run: Executor,
                  warn: Callable[[str], None], create: Optional[bool] = None) -> Link:
    """Make the bridge exist with its uplink, up; return it. Leaves `lock` held (shared,
    or exclusive if anything had to be built) so the bridge cannot go away meanwhile.
    What it changes goes through `run`, so that a later failure undoes it too. `create`
    overrides the segment's setting."""
    lock.shared()
    scene = observe(nl, segment)
    check_uplink_offloads(segment, scene, warn)
    bridge = scene.bridge
    if scene.plan(segment, create=create).ops:
        # Build under the exclusive lock, after looking again: a concurrent hook may
        # have built it while we waited.
        lock.exclusive()
        scene = observe(nl, segment)
        plan = scene.plan(segment, machine_id(), create)
        run.know(*scene.links())
        run.apply(plan.ops)
        bridge = nl.get_link(segment.bridge)
        if bridge is None:
            raise UnavailableError(f"bridge {segment.bridge} disappeared after creation")
    assert bridge is not None  # plan_bridge raises when it is missing and not creatable
    return bridge


def port_rules_exist(tap: str) -> bool:
    """The bridge table holds rules for a TAP of this name (a killed VM's, or this
    one's). False where nf_tables cannot tell: not built in, or no privilege."""
    if not guards_used():
        return False
    from .nftables import Nftables

    try:
        with Nftables() as nft:
            return nft.has_port(tap)
    except OSError:
        return False


def shaping_exists(nl: Netlink, tap: str) -> bool:
    """An ifb device of a TAP of this name is there (they outlive their TAP)."""
    if not guards_used():
        return False
    from .tc import ifb_name

    return any(nl.get_link(ifb_name(direction, tap)) for direction in ("rx", "tx"))


def leftovers(nl: Netlink, tap: str) -> List[Op]:
    """What removes the rules and rate limits a TAP of this name has."""
    found: List[Op] = []
    if port_rules_exist(tap):
        from .guardops import RemovePortRules  # only where guards were used

        found.append(RemovePortRules(tap))
    if shaping_exists(nl, tap):
        from .guardops import Unshape

        found.append(Unshape(tap))
    return found


def guest_rules(segment: Segment, ports: Sequence[Port], tap: str,
                qemu_pid: Optional[int] = None, helper_br: Optional[str] = None) -> List[Rule]:
    """What the TAP may send under its segment's port_security; [] when it is off.
    `qemu_pid`: the QEMU the TAP is for (default: the parent, which runs the hook);
    `helper_br`: the br= of its -netdev bridge, when the bridge helper asked for it."""
    if segment.port_security == "off":
        return []
    from .portconfig import Invalid, parse_mac, port_for
    from .portsecurity import (caller_bridge_nic_mac, caller_has_bridge_nic, caller_nic_mac,
                               port_rules)

    port = port_for(ports, tap)
    mac = port.mac if port is not None else None
    pid = qemu_pid or posix.getppid()
    if mac is None:
        # The guest's MAC as QEMU gives it: the NIC of this TAP in the command line
        # of the QEMU that runs this hook.
        found = caller_bridge_nic_mac(helper_br, pid) if helper_br else caller_nic_mac(tap, pid)
        try:
            mac = parse_mac(found) if found else None
        except Invalid:
            raise UnavailableError(f"the NIC of {tap} has mac={found}, which is not a guest's "
                                   f"unicast MAC") from None
    if mac is None and helper_br:
        if not caller_has_bridge_nic(helper_br, pid):
            raise UnavailableError(
                f'{segment.key} has port_security = "{segment.port_security}", which needs '
                f"the guest's MAC, and no QEMU with a NIC on -netdev bridge,br={helper_br} "
                f"ran the bridge helper (libvirt's session mode runs it itself): give such "
                f"guests a segment without port_security")
        raise UnavailableError(
            f'{segment.key} has port_security = "{segment.port_security}", which needs the '
            f"guest's MAC: give the NIC of -netdev bridge,br={helper_br} a mac= in QEMU's "
            f"command line (one such NIC per bridge)")
    if mac is None:
        raise UnavailableError(
            f'{segment.key} has port_security = "{segment.port_security}", which needs the '
            f'guest\'s MAC: set mac = "..." in [port."{tap}"], or give the NIC of '
            f"ifname={tap} a mac= in QEMU's command line")
    return port_rules(segment.port_security, mac, port)


def attach(nl: Netlink, segment: Segment, tap: str, trace: Trace,
           warn: Callable[[str], None], ports: Sequence[Port] = (),
           qemu_pid: Optional[int] = None, helper_br: Optional[str] = None) -> Link:
    """ifup: one run, rolled back whole if any step fails (the bridge it built included),
    so that a failed ifup leaves the kernel as it was; returns the TAP as read back.
    `ports`: the config's [port] tables; `qemu_pid`, `helper_br`: see guest_rules."""
    link = nl.get_link(tap)
    if link is None:
        raise UnavailableError(f"{tap} does not exist (QEMU creates it before running the hook)")
    require_tap(link)  # before anything else: never build or enslave for a non-TAP
    if link.master:  # a repeated ifup, or a TAP someone put elsewhere: refuse before building
        require_not_elsewhere(link, nl.get_link(segment.bridge))
    rules = guest_rules(segment, ports, tap, qemu_pid, helper_br)
    shaped = bool(segment.guest_rx_mbit or segment.guest_tx_mbit)
    with BridgeLock(segment.bridge) as lock, Executor(nl, (link,), trace) as run:
        bridge = ensure_bridge(nl, segment, lock, run, warn)
        run.know(bridge)
        plan = plan_attach(segment, link, bridge, tap_vlans(nl, segment, link, bridge),
                           rules=rules, has_rules=not rules and port_rules_exist(tap),
                           has_shaping=not shaped and shaping_exists(nl, tap))
        run.apply(plan.ops)
        return verify_attached(nl, tap, bridge)


def detach(nl: Netlink, segment: Segment, tap: str, trace: Trace,
           note: Callable[[str], None]) -> None:
    link = nl.get_link(tap)
    plan = plan_detach(segment, link, nl.get_link(segment.bridge) if link else None,
                       leftovers(nl, tap))
    for message in plan.notes:
        note(message)
    try:
        Executor(nl, (link,), trace).apply(plan.ops)
    except PermissionDenied:
        # QEMU dropped privileges (-run-with user=, or -runas before QEMU 10): nothing
        # is left to undo, the kernel removes the port when QEMU closes the TAP right
        # after this script.
        note("no CAP_NET_ADMIN (QEMU dropped privileges); the kernel detaches the TAP "
             "when QEMU closes it")
    except UnavailableError:
        note("disappeared while being detached")


def teardown(nl: Netlink, segment: Segment, force: bool, trace: Trace,
             note: Callable[[str], None] = lambda message: None) -> bool:
    """Delete the segment's bridge, and a classic segment's subinterface if the hooks
    made it; False when there was nothing to delete."""
    from .buildplan import plan_teardown
    from .linkbuild import list_links

    with BridgeLock(segment.bridge) as lock:
        lock.exclusive()
        bridge = nl.get_link(segment.bridge)
        ports = list_links(nl, master=bridge.index) if bridge else []
        vlan_port = nl.get_link(segment.uplink_port) if segment.classic else None
        vxlan_port = nl.get_link(segment.vxlan_port) if segment.vxlan_port else None
        plan = plan_teardown(segment, bridge, ports, force, vlan_port, vxlan_port)
        for message in plan.notes:
            note(message)
        Executor(nl, [bridge, vlan_port, vxlan_port] + ports, trace).apply(plan.ops)
        if bridge is not None and not nl.get_link(segment.bridge):
            lock.remove()  # no bridge, no lock: lock files would pile up otherwise
        return bool(plan.ops)
