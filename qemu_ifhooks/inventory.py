"""The admin side's view of the network namespace it runs in: every link with what
`check` and `status` report, read with pyroute2 (links, addresses, ethtool features)
and sysfs. Never imported by the hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .errors import UnavailableError

OFFLOAD_FEATURES = ("rx-lro", "rx-gro", "rx-gro-hw")
# IFF_UP; IF_OPER_* as iproute2 prints them
_IFF_UP = 0x1
NET_ADDR_SET = 3  # /sys/class/net/DEV/addr_assign_type: the address was set explicitly
# Kinds whose IFLA_LINK is the device they sit on (a veth's is its peer).
STACKED_KINDS = ("vlan", "macvlan", "macvtap", "ipvlan", "ipvtap")


@dataclass(frozen=True)
class Feature:
    enabled: bool
    fixed: bool  # the driver cannot change it


@dataclass(frozen=True)
class BridgeInfo:
    stp: bool
    forward_delay: float  # seconds
    nf_call_iptables: bool  # per-bridge br_netfilter switches
    nf_call_ip6tables: bool
    vlan_filtering: Optional[bool]
    # The PVID new ports get (0: none); None when the kernel lacks VLAN filtering.
    vlan_default_pvid: Optional[int] = None


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: Optional[str]  # "bridge", "veth", "tun", ...; None for NICs and lo
    tun_type: Optional[str]  # "tap" or "tun" for kind "tun"
    admin_up: bool
    operstate: str  # as ip(8) prints it: "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ...
    mtu: int
    address: Optional[str]
    master: Optional[str]  # name of the master, None when none
    lower: Optional[str]  # the device a vlan/macvlan sits on
    addr_assign_type: Optional[int] = None  # sysfs; None when unreadable
    bridge: Optional[BridgeInfo] = None
    global_addresses: Tuple[str, ...] = ()
    vlan_id: Optional[int] = None  # the 802.1Q VID of a vlan device
    alias: Optional[str] = None
    port_vids: Tuple[int, ...] = ()  # the VLANs of a port of a VLAN-filtering bridge

    @property
    def is_tap(self) -> bool:
        return self.kind == "tun" and self.tun_type == "tap"

    @property
    def kind_text(self) -> str:
        if self.kind == "tun":
            return self.tun_type or "tun"
        return self.kind or ("loopback" if self.name == "lo" else "device")


@dataclass(frozen=True)
class Inventory:
    links: Dict[str, LinkInfo] = field(default_factory=dict)

    def get(self, name: Optional[str]) -> Optional[LinkInfo]:
        return self.links.get(name) if name else None

    def ports(self, bridge: str) -> List[LinkInfo]:
        return sorted((l for l in self.links.values() if l.master == bridge),
                      key=lambda l: l.name)


def _addr_assign_type(name: str) -> Optional[int]:
    try:
        with open(f"/sys/class/net/{name}/addr_assign_type") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _bridge_info(data) -> BridgeInfo:
    def get(attr: str, default=0):
        value = data.get_attr(attr) if data is not None else None
        return default if value is None else value
    vlan_filtering = data.get_attr("IFLA_BR_VLAN_FILTERING") if data is not None else None
    return BridgeInfo(stp=bool(get("IFLA_BR_STP_STATE")),
                      forward_delay=get("IFLA_BR_FORWARD_DELAY") / 100,  # clock_t
                      nf_call_iptables=bool(get("IFLA_BR_NF_CALL_IPTABLES")),
                      nf_call_ip6tables=bool(get("IFLA_BR_NF_CALL_IP6TABLES")),
                      vlan_filtering=None if vlan_filtering is None else bool(vlan_filtering),
                      vlan_default_pvid=get("IFLA_BR_VLAN_DEFAULT_PVID", None))


def read_inventory() -> Inventory:
    """Every link of this network namespace, with global addresses and bridge details."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover - a dependency of the package
        raise UnavailableError("pyroute2 is not installed (apt-get install python3-pyroute2)") \
            from None
    with IPRoute() as ipr:
        messages = list(ipr.get_links())
        addresses: Dict[int, List[str]] = {}
        for msg in ipr.get_addr():
            if msg["scope"] == 0:  # RT_SCOPE_UNIVERSE
                address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                addresses.setdefault(msg["index"], []).append(f"{address}/{msg['prefixlen']}")
        vids: Dict[int, List[int]] = {}
        for msg in ipr.get_vlans():
            spec = msg.get_attr("IFLA_AF_SPEC")
            for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else ():
                vids.setdefault(msg["index"], []).append(info["vid"])
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in messages}
    links: Dict[str, LinkInfo] = {}
    for msg in messages:
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        tun_type = None
        if kind == "tun" and data is not None:
            tun_type = {1: "tun", 2: "tap"}.get(data.get_attr("IFLA_TUN_TYPE"))
        name = msg.get_attr("IFLA_IFNAME")
        lower = msg.get_attr("IFLA_LINK") if kind in STACKED_KINDS else None
        vlan_id = data.get_attr("IFLA_VLAN_ID") if kind == "vlan" and data is not None else None
        links[name] = LinkInfo(
            index=msg["index"], name=name, kind=kind, tun_type=tun_type,
            admin_up=bool(msg["flags"] & _IFF_UP),
            operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
            mtu=msg.get_attr("IFLA_MTU") or 0,
            address=msg.get_attr("IFLA_ADDRESS"),
            master=names.get(msg.get_attr("IFLA_MASTER")),
            lower=names.get(lower) if lower else None,
            addr_assign_type=_addr_assign_type(name),
            bridge=_bridge_info(data) if kind == "bridge" else None,
            global_addresses=tuple(addresses.get(msg["index"], ())),
            vlan_id=vlan_id, alias=msg.get_attr("IFLA_IFALIAS"),
            port_vids=tuple(sorted(set(vids.get(msg["index"], ())))))
    return Inventory(links)


def read_features(names) -> Tuple[Dict[str, Dict[str, Feature]], Dict[str, str]]:
    """The receive offloads (OFFLOAD_FEATURES) of each device, as `ethtool -k` shows
    them, and why a device's could not be read."""
    from pyroute2.ethtool import Ethtool

    features: Dict[str, Dict[str, Feature]] = {}
    errors: Dict[str, str] = {}
    ethtool = Ethtool()
    try:
        for name in names:
            try:
                table = ethtool.get_features(name).features
            except OSError as e:
                errors[name] = e.strerror or str(e)
                continue
            features[name] = {key: Feature(bool(table[key].enable), not table[key].available)
                              for key in OFFLOAD_FEATURES if key in table}
    finally:
        ethtool.close()
    return features, errors
