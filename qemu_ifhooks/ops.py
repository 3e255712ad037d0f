"""The operations a plan is made of: each is a small value that says what it changes
in the kernel as the equivalent `ip`, `bridge`, `nft` or `tc` command (`command()`);
apply.py carries them out and knows their inverses (buildapply.py, guardapply.py and
vxlanapply.py for the kinds other than "link"). Kept apart from the planning so
that the hook, which runs only a few of them, loads no more code than it needs.

Here the operations a hook runs on its TAP and on the ports of an existing bridge
(links, bridge ports, bridge VLANs). Those that build and delete links are in
buildops.py, which a hook loads only when it builds its bridge; those of the guards
(nftables rules, isolation, rate limits) in guardops.py and those of VXLAN in
vxlanops.py, which only a segment that uses them loads: every class costs each hook
start some 15 microseconds to define.
"""

from __future__ import annotations

from .record import Record

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
    creates = False  # it makes the link `ifname`, which its undo deletes
    kind = "link"  # the part of apply.Executor that carries it out: link, build, guard, vxlan

    def command(self) -> str:
        raise NotImplementedError


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
