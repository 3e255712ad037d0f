"""VXLAN's operations (see ops.py): the VXLAN device, the flags EVPN wants on its
bridge port, the flood list. Only a segment across hosts loads them.
"""

from __future__ import annotations

from .ops import Op, shell_quote

VXLAN_PORT = 4789  # IANA's; the kernel's default is Linux's old 8472


class VxlanOp(Op):
    __slots__ = ()
    kind = "vxlan"


class CreateVxlan(VxlanOp):
    __slots__ = ("ifname", "vni", "local", "dev", "group", "learning", "mtu")
    creates = True

    def command(self) -> str:
        group = f" group {self.group}" if self.group else ""
        learning = "" if self.learning else " nolearning"
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        return (f"ip link add {shell_quote(self.ifname)}{mtu} type vxlan id {self.vni} "
                f"local {self.local} dev {shell_quote(self.dev)} dstport {VXLAN_PORT}"
                f"{group}{learning}")


class SetBridgePort(VxlanOp):
    """The port flags EVPN wants: zebra, not the bridge, says which MAC is where, and
    answers ARP/ND for remote guests."""

    __slots__ = ("ifname", "learning", "neigh_suppress")

    def command(self) -> str:
        return (f"bridge link set dev {shell_quote(self.ifname)} learning "
                f"{'on' if self.learning else 'off'} neigh_suppress "
                f"{'on' if self.neigh_suppress else 'off'}")


class FdbAppend(VxlanOp):
    __slots__ = ("ifname", "dst")

    def command(self) -> str:
        return f"bridge fdb append 00:00:00:00:00:00 dev {shell_quote(self.ifname)} dst {self.dst}"


class FdbDel(VxlanOp):
    __slots__ = ("ifname", "dst")

    def command(self) -> str:
        return f"bridge fdb del 00:00:00:00:00:00 dev {shell_quote(self.ifname)} dst {self.dst}"
