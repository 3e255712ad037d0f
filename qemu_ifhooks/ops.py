"""The operations a plan is made of: each is a small value that says what it changes
in the kernel as the equivalent `ip`, `bridge`, `nft` or `tc` command (`command()`);
apply.py carries them out and knows their inverses. Kept apart from the planning so
that the hook, which runs only a few of them, loads no more code than it needs.
"""

from __future__ import annotations

from .record import Record

VXLAN_PORT = 4789  # IANA's; the kernel's default is Linux's old 8472


def mac_text(address: bytes) -> str:
    return ":".join(f"{b:02x}" for b in address)


_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def shell_quote(word: str) -> str:
    """shlex.quote, without the import of `re` that shlex costs every hook start: a TAP
    name comes from QEMU's ifname= and may hold anything the kernel allows."""
    if word and all(c in _SHELL_SAFE for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


class Op(Record):
    """One change to the kernel; `command()` says it as the `ip`/`bridge` equivalent."""

    __slots__ = ()
    # Several kernel changes in one op: its undo also runs when it fails midway.
    compound = False

    def command(self) -> str:
        raise NotImplementedError


class CreateBridge(Op):
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

    @property
    def ifname(self) -> str:
        """The link the op creates, named as in every other op."""
        return self.bridge

    def command(self) -> str:
        vlans = " vlan_filtering 1 vlan_default_pvid 0" if self.vlan_aware else ""
        return (f"ip link add {shell_quote(self.bridge)} address {mac_text(self.address)} type bridge "
                f"stp_state {int(self.stp)} forward_delay {self.forward_delay * 100}{vlans}")


class CreateVlan(Op):
    __slots__ = ("ifname", "parent", "vid")

    def command(self) -> str:
        return (f"ip link add link {shell_quote(self.parent)} name {shell_quote(self.ifname)} "
                f"type vlan id {self.vid}")


class SetAlias(Op):
    __slots__ = (
        "ifname",
        "alias",
    )

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} alias {shell_quote(self.alias)}"


class BridgeVlanAdd(Op):
    __slots__ = (
        "ifname",
        "vid",
        "pvid_untagged",  # the port's own VLAN, untagged; else tagged
    )
    _defaults = {"pvid_untagged": False}

    def command(self) -> str:
        flags = " pvid untagged" if self.pvid_untagged else ""
        return f"bridge vlan add dev {shell_quote(self.ifname)} vid {self.vid}{flags}"


class BridgeVlanDel(Op):
    __slots__ = ("ifname", "vid")

    def command(self) -> str:
        return f"bridge vlan del dev {shell_quote(self.ifname)} vid {self.vid}"


class SetMtu(Op):
    __slots__ = ("ifname", "mtu")

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} mtu {self.mtu}"


class SetMaster(Op):
    __slots__ = ("ifname", "master")

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} master {shell_quote(self.master)}"


class SetNoMaster(Op):
    __slots__ = ("ifname",)

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} nomaster"


class SetUp(Op):
    __slots__ = ("ifname",)

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} up"


class SetDown(Op):
    __slots__ = ("ifname",)

    def command(self) -> str:
        return f"ip link set dev {shell_quote(self.ifname)} down"


class DeleteLink(Op):
    __slots__ = ("ifname",)

    def command(self) -> str:
        return f"ip link del dev {shell_quote(self.ifname)}"


class SetPortRules(Op):
    """The TAP's chain in the bridge table holds exactly `rules`, and its frames go
    there (nftables.py); written whole or not at all."""

    __slots__ = (
        "ifname",
        "rules",  # a tuple of portsecurity.Rule
    )

    def command(self) -> str:
        from .nftables import PORTS_MAP, TABLE, port_chain

        chain = f"bridge {TABLE} {port_chain(self.ifname)}"
        script = [f"add chain {chain}", f"flush chain {chain}"]
        script += [f"add rule {chain} {rule.text}" for rule in self.rules]
        script.append(f"add element bridge {TABLE} {PORTS_MAP} {{ {nft_string(self.ifname)} : "
                      f"jump {port_chain(self.ifname)} }}")
        return f"nft {shell_quote('; '.join(script))}"


class RemovePortRules(Op):
    __slots__ = ("ifname",)

    def command(self) -> str:
        from .nftables import PORTS_MAP, TABLE, port_chain

        return "nft " + shell_quote(f"delete element bridge {TABLE} {PORTS_MAP} "
                                    f"{{ {nft_string(self.ifname)} }}; delete chain bridge {TABLE} "
                                    f"{port_chain(self.ifname)}")


class SetPortIsolated(Op):
    __slots__ = ("ifname", "isolated")

    def command(self) -> str:
        return f"bridge link set dev {shell_quote(self.ifname)} isolated {'on' if self.isolated else 'off'}"


class ShapeGuest(Op):
    """The TAP's rate limits (tc.py), replacing whatever shaping it had."""

    __slots__ = ("ifname", "rx_mbit", "tx_mbit")
    compound = True

    def command(self) -> str:
        from .tc import HOOKS, MARK, ifb_name, tbf_limits

        tap = shell_quote(self.ifname)
        steps = [f"tc qdisc del dev {tap} clsact", f"tc qdisc add dev {tap} clsact"]
        for direction, mbit in (("rx", self.rx_mbit), ("tx", self.tx_mbit)):
            if mbit:
                ifb = shell_quote(ifb_name(direction, self.ifname))
                _, burst, limit = tbf_limits(mbit)
                hook = "egress" if HOOKS[direction] == HOOKS["rx"] else "ingress"
                steps += [f"ip link add {ifb} type ifb",
                          f"ip link set dev {ifb} alias {shell_quote(MARK.format(direction=direction, tap=self.ifname))} up",
                          f"tc qdisc replace dev {ifb} root tbf rate {mbit}mbit burst {burst} limit {limit}",
                          f"tc filter add dev {tap} {hook} protocol all u32 match u32 0 0 "
                          f"action mirred egress redirect dev {ifb}"]
        return "; ".join(steps)


class Unshape(Op):
    """No rate limits for the TAP: its ifb devices (which outlive it) and clsact go."""

    __slots__ = ("ifname",)

    def command(self) -> str:
        from .tc import ifb_name

        tap = shell_quote(self.ifname)
        return "; ".join([f"tc qdisc del dev {tap} clsact"] + [
            f"ip link del dev {shell_quote(ifb_name(d, self.ifname))}" for d in ("rx", "tx")])


def nft_string(name: str) -> str:
    """An interface name as nft quotes it."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- VXLAN -------------------------------------------------------------------------------

class CreateVxlan(Op):
    __slots__ = ("ifname", "vni", "local", "dev", "group", "learning", "mtu")

    def command(self) -> str:
        group = f" group {self.group}" if self.group else ""
        learning = "" if self.learning else " nolearning"
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        return (f"ip link add {shell_quote(self.ifname)}{mtu} type vxlan id {self.vni} "
                f"local {self.local} dev {shell_quote(self.dev)} dstport {VXLAN_PORT}"
                f"{group}{learning}")


class SetBridgePort(Op):
    """The port flags EVPN wants: zebra, not the bridge, says which MAC is where, and
    answers ARP/ND for remote guests."""

    __slots__ = ("ifname", "learning", "neigh_suppress")

    def command(self) -> str:
        return (f"bridge link set dev {shell_quote(self.ifname)} learning "
                f"{'on' if self.learning else 'off'} neigh_suppress "
                f"{'on' if self.neigh_suppress else 'off'}")


class FdbAppend(Op):
    __slots__ = ("ifname", "dst")

    def command(self) -> str:
        return f"bridge fdb append 00:00:00:00:00:00 dev {shell_quote(self.ifname)} dst {self.dst}"


class FdbDel(Op):
    __slots__ = ("ifname", "dst")

    def command(self) -> str:
        return f"bridge fdb del 00:00:00:00:00:00 dev {shell_quote(self.ifname)} dst {self.dst}"
