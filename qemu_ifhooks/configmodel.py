"""The validated config: the records that config.py builds from the TOML file (Config,
Segment, and the VxlanConfig, EvpnConfig and Port of vxlan.py and portconfig.py) and
every other module reads.

Apart from config.py's schema and parser, so that a hook, which gets its Config from
the cache (configcache.py), does not load the parser.
"""

from __future__ import annotations

from .record import Record

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Dict, List, Optional

OFFLOAD_MODES = ("enforce", "warn", "off")
PORT_SECURITY_MODES = ("off", "mac", "ip")
MAX_VLAN = 4094


def parse_vlan(text: str) -> Optional[int]:
    """A QEMU VLAN number written plainly (ASCII digits, no leading zeros), or None."""
    if len(text) <= 4 and text.isascii() and text.isdigit() and str(int(text)) == text \
            and int(text) <= MAX_VLAN:
        return int(text)
    return None


class Segment(Record):
    """One QEMU VLAN: the bridge its TAPs join and how that bridge is built."""

    __slots__ = (
        "vlan",
        "bridge",
        "uplink",
        "tag",
        "mtu",
        "match",  # a tuple of globs
        "offload_check",
        "create",
        "stp",
        "forward_delay",
        "allow_addressed_uplink",
        "trunk",  # VLANs a TAP of a VLAN-aware bridge also gets, tagged
        # Derived from the whole config, not a key: the VLANs of a VLAN-aware bridge (one
        # that several tagged segments share), every segment's tag and trunk, which its
        # uplink carries tagged. Empty for every other bridge.
        "bridge_vids",
        "port_security",  # "off", "mac" or "ip": what each TAP may send (portsecurity.py)
        "isolated",  # bridge port isolation: the TAPs reach the uplink, not each other
        "guest_rx_mbit",  # shape what each guest receives, or None
        "guest_tx_mbit",  # shape what each guest sends, or None
        "vxlan",  # vxlan.VxlanConfig: the segment spans hosts (instead of an uplink)
        "allow_users",  # who may use the segment through the bridge helper (broker.py)
        "allow_groups",
    )
    _defaults = {"uplink": None, "tag": None, "mtu": None, "match": (),
                 "offload_check": "enforce", "create": True, "stp": False,
                 "forward_delay": 0, "allow_addressed_uplink": False, "trunk": (),
                 "bridge_vids": (), "port_security": "off", "isolated": False,
                 "guest_rx_mbit": None, "guest_tx_mbit": None,
                 "vxlan": None,
                 "allow_users": (), "allow_groups": ()}

    @property
    def key(self) -> str:
        return f"vlan.{self.vlan}"

    @property
    def vlan_aware(self) -> bool:
        """The bridge is shared by tagged segments: VLAN filtering keeps them apart."""
        return bool(self.bridge_vids)

    @property
    def classic(self) -> bool:
        """A tag on a bridge of its own: the bridge's uplink port is <uplink>.<tag>."""
        return self.tag is not None and not self.vlan_aware

    @property
    def uplink_port(self) -> Optional[str]:
        """The link that joins the bridge to the physical network: the uplink, or a
        classic segment's 802.1Q subinterface of it."""
        if self.uplink is not None and self.classic:
            return f"{self.uplink}.{self.tag}"
        return self.uplink

    @property
    def vxlan_port(self) -> Optional[str]:
        """The VXLAN link that joins the bridge to the other hosts, if the segment spans
        hosts."""
        return self.vxlan.port if self.vxlan is not None else None


class Config(Record):
    __slots__ = (
        "path",
        "segments",  # a tuple of Segment, in file order
        "default_vlan",
        "ports",  # a tuple of portconfig.Port, in file order
        "evpn",  # vxlan.EvpnConfig of the [evpn] table, or None
    )
    _defaults = {"default_vlan": None, "ports": (), "evpn": None}

    def segment(self, vlan: int) -> Optional[Segment]:
        for segment in self.segments:
            if segment.vlan == vlan:
                return segment
        return None

    def segments_on(self, bridge: str) -> List[Segment]:
        return [s for s in self.segments if s.bridge == bridge]

    def bridges(self) -> List[Segment]:
        """The first segment of each bridge, in file order."""
        seen: Dict[str, Segment] = {}
        for segment in self.segments:
            seen.setdefault(segment.bridge, segment)
        return list(seen.values())


class VxlanConfig(Record):
    """A segment's `vxlan = { ... }`: exactly one of remotes, group, evpn."""

    __slots__ = ("vni", "local", "dev", "remotes", "group", "evpn")
    _defaults = {"remotes": (), "group": None, "evpn": False}

    @property
    def port(self) -> str:
        return f"vxlan{self.vni}"

    @property
    def mode(self) -> str:
        return "evpn" if self.evpn else "multicast" if self.group else "static"


class EvpnConfig(Record):
    """The [evpn] table: only `frr-config` and `check` read it."""

    __slots__ = ("asn", "peers", "router_id", "pathspace")
    _defaults = {"router_id": None, "pathspace": None}


class Port(Record):
    __slots__ = (
        "pattern",  # a TAP name or a glob
        "mac",  # bytes, or None: take it from QEMU's command line
        "ipv4",  # a tuple of (packed address, prefix length)
        "ipv6",
    )
    _defaults = {"mac": None, "ipv4": (), "ipv6": ()}
