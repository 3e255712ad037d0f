"""The operations that build and take down a segment's links (see ops.py): a bridge,
a classic segment's VLAN subinterface, the alias that marks what the hooks made, and
deleting a link. A hook loads them only when it builds its bridge, the first VM start
of a segment; `qemu-ifhooks up` and `down` use them every time.
"""

from __future__ import annotations

from .ops import Op, mac_text, shell_quote


class BuildOp(Op):
    __slots__ = ()
    kind = "build"


class CreateBridge(BuildOp):
    __slots__ = (
        "bridge",
        "address",
        "stp",
        "forward_delay",  # seconds
        # VLAN filtering on, and no default PVID: a new port is in no VLAN until the
        # hook gives it its own (the kernel's default would put every port in VLAN 1).
        "vlan_aware",
    )
    _defaults = {"vlan_aware": False}
    creates = True

    @property
    def ifname(self) -> str:
        """The link the op creates, named as in every other op."""
        return self.bridge

    def command(self) -> str:
        vlans = " vlan_filtering 1 vlan_default_pvid 0" if self.vlan_aware else ""
        return (f"ip link add {shell_quote(self.bridge)} address {mac_text(self.address)} type bridge "
                f"stp_state {int(self.stp)} forward_delay {self.forward_delay * 100}{vlans}")


class CreateVlan(BuildOp):
    __slots__ = ("ifname", "parent", "vid")
    creates = True

    def command(self) -> str:
        return (f"ip link add link {shell_quote(self.parent)} name {shell_quote(self.ifname)} "
                f"type vlan id {self.vid}")


class SetAlias(BuildOp):
    __slots__ = (
        "ifname",
        "alias",
    )

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} alias {shell_quote(self.alias)}"


class DeleteLink(BuildOp):
    __slots__ = ("ifname",)

    def command(self) -> str:
        return f"ip link del dev {shell_quote(self.ifname)}"
