"""The guards' operations (see ops.py): a TAP's nftables rules (nftables.py,
portsecurity.py), its isolation from the other ports, its rate limits (tc.py). Only a
segment that guards its ports, or a TAP a guarded VM left behind, loads them.
"""

from __future__ import annotations

from .ops import Op, shell_quote


class GuardOp(Op):
    __slots__ = ()
    kind = "guard"


class SetPortRules(GuardOp):
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


class RemovePortRules(GuardOp):
    __slots__ = ("ifname",)

    def command(self) -> str:
        from .nftables import PORTS_MAP, TABLE, port_chain

        return "nft " + shell_quote(f"delete element bridge {TABLE} {PORTS_MAP} "
                                    f"{{ {nft_string(self.ifname)} }}; delete chain bridge {TABLE} "
                                    f"{port_chain(self.ifname)}")


class SetPortIsolated(GuardOp):
    __slots__ = ("ifname", "isolated")

    def command(self) -> str:
        return f"bridge link set dev {shell_quote(self.ifname)} isolated {'on' if self.isolated else 'off'}"


class ShapeGuest(GuardOp):
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


class Unshape(GuardOp):
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
