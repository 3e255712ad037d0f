"""What `check` and `status` say about segments that span hosts.

Pure: findings from the inventory, the config and FRR's answers (frr.EvpnState);
the fdb read for `status` is the one edge here.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from .configmodel import Config, Segment
from .doctor import FAIL, OK, WARN, Finding
from .frr import EvpnState, evpn_segments
from .inventory import Inventory
from .vxlan import bridge_mtu, mtu_problem, overhead

GUEST_MTU = 1500  # what a guest's virtio-net uses unless told otherwise


def vxlan_findings(segment: Segment, inventory: Inventory) -> List[Finding]:
    vx = segment.vxlan
    if vx is None:
        return []
    underlay = inventory.get(vx.dev)
    if underlay is None:
        return [Finding(FAIL, "vxlan.underlay", vx.dev, f"underlay of {segment.key} "
                        f"(VNI {vx.vni}) does not exist: ifup on {segment.key} fails",
                        f"create it, or correct {segment.key}.vxlan.dev")]
    out: List[Finding] = []
    addresses = {a.split("/")[0] for link in inventory.links.values()
                 for a in link.global_addresses}
    if vx.local in addresses:
        out.append(Finding(OK, "vxlan.local", vx.local, f"an address of this host; the "
                           f"VTEP of VNI {vx.vni}"))
    else:
        out.append(Finding(FAIL, "vxlan.local", vx.local, f"{segment.key}.vxlan.local is not "
                           f"an address of this host: ifup on {segment.key} fails",
                           f"ip addr add {vx.local}/PREFIX dev {vx.dev}, or correct "
                           f"{segment.key}.vxlan.local"))
    problem = mtu_problem(segment, underlay)  # a LinkInfo has the name and mtu they read
    mtu = bridge_mtu(segment, underlay)
    if problem:
        out.append(Finding(FAIL, "vxlan.mtu", vx.dev, problem,
                           f"ip link set dev {vx.dev} mtu {segment.mtu + overhead(vx.local)}"))
    elif mtu is not None and mtu < GUEST_MTU:
        out.append(Finding(WARN, "vxlan.mtu", vx.dev,
                           f"MTU {underlay.mtu} leaves {mtu} for {segment.bridge} after "
                           f"{overhead(vx.local)} bytes of VXLAN headers: guests must use "
                           f"MTU {mtu} (host_mtu={mtu} on virtio-net), or their full-size "
                           f"frames are dropped",
                           f"ip link set dev {vx.dev} mtu {GUEST_MTU + overhead(vx.local)} "
                           f"(on every host and the switches between them)"))
    else:
        out.append(Finding(OK, "vxlan.mtu", vx.dev, f"MTU {underlay.mtu} carries {mtu} on "
                           f"{segment.bridge} ({overhead(vx.local)} bytes of VXLAN headers)"))
    port = inventory.get(vx.port)
    bridge = inventory.get(segment.bridge)
    if port is not None and bridge is not None and port.master != segment.bridge:
        out.append(Finding(FAIL, "vxlan.port", vx.port, f"not a port of {segment.bridge}: "
                           f"the segment does not reach the other hosts",
                           f"qemu-ifhooks up {segment.vlan}"))
    return out


def evpn_findings(config: Optional[Config], state: Optional[EvpnState]) -> List[Finding]:
    segments = evpn_segments(config) if config is not None else []
    if not segments:
        return []
    if state is None or state.error:
        why = state.error if state is not None else "not asked"
        return [Finding(WARN, "evpn", "bgpd", f"EVPN segments, but {why}: their VTEPs and "
                        f"MACs are not learned", "merge 'qemu-ifhooks frr-config' into "
                        "frr.conf and start zebra and bgpd")]
    out = []
    sessions = dict(state.sessions)
    peers = config.evpn.peers if config.evpn else tuple(sessions)
    for peer in peers:
        session = sessions.get(peer)
        if session == "Established":
            out.append(Finding(OK, "evpn.session", peer, "l2vpn evpn session established"))
        else:
            out.append(Finding(FAIL, "evpn.session", peer,
                               f"l2vpn evpn session {session or 'not configured in bgpd'}",
                               "compare 'qemu-ifhooks frr-config' with 'vtysh -c \"show "
                               "running-config\"'; check the underlay between the hosts"))
    for segment in segments:
        vni = segment.vxlan.vni
        if vni in state.vnis:
            out.append(Finding(OK, "evpn.vni", str(vni), f"known to zebra ({segment.key})"))
        else:
            out.append(Finding(FAIL, "evpn.vni", str(vni), f"unknown to zebra: {segment.key}'s "
                               f"{segment.vxlan.port} is missing or not on a bridge",
                               f"qemu-ifhooks up {segment.vlan}"))
    return out


# --- status -----------------------------------------------------------------------------

def read_fdb(config: Config) -> Dict[str, list]:
    """The remote fdb entries of each VXLAN segment's link that exists."""
    from .netlink import Netlink
    from .vxlannl import fdb_entries

    out = {}
    with Netlink() as nl:
        for segment in config.bridges():
            if segment.vxlan is None:
                continue
            link = nl.get_link(segment.vxlan.port)
            if link is not None:
                out[segment.vxlan.port] = fdb_entries(nl, link.index)
    return out


def vxlan_status(segment: Segment, fdb: Dict[str, list]) -> Optional[dict]:
    vx = segment.vxlan
    if vx is None:
        return None
    entries = fdb.get(vx.port, [])
    remote_macs = sorted((e.mac, e.dst, e.extern_learn) for e in entries
                         if e.mac != "00:00:00:00:00:00")
    return {"port": vx.port, "present": vx.port in fdb, "vni": vx.vni, "mode": vx.mode,
            "local": vx.local,
            "vteps": sorted({e.dst for e in entries if e.mac == "00:00:00:00:00:00"}),
            "remote_macs": [{"mac": m, "vtep": d, "extern_learn": x} for m, d, x in remote_macs]}


def vxlan_status_lines(status: Optional[dict]) -> List[str]:
    if status is None:
        return []
    head = f"  vxlan {status['port']}: vni {status['vni']}, {status['mode']}, local {status['local']}"
    if not status["present"]:
        return [head + ", absent"]
    lines = [head + f", remote VTEPs: {', '.join(status['vteps']) or 'none'}"]
    for mac in status["remote_macs"]:
        how = "EVPN" if mac["extern_learn"] else "learned"
        lines.append(f"  remote mac {mac['mac']} via {mac['vtep']} ({how})")
    return lines
