"""Where the packet filter drops forwarded traffic: from `nft -j list ruleset` and from
`iptables-legacy -S FORWARD` output. Pure parsing; `gather.py` runs the commands.

With br_netfilter's bridge-nf-call-iptables = 1 (Docker loads it), bridged frames pass
the IPv4 FORWARD hook, so a FORWARD chain that drops eats the guests' traffic without a
trace on the bridge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List, Tuple

# Families whose forward hook sees bridged traffic through br_netfilter, by the
# sysctl that sends it there; "bridge" chains see it always.
IPV4, IPV6, BRIDGE = "ipv4", "ipv6", "bridge"
_FAMILY_PATHS = {"ip": (IPV4,), "ip6": (IPV6,), "inet": (IPV4, IPV6), "bridge": (BRIDGE,)}
_DROPS = ("drop", "reject")
_UNCONDITIONAL = ("counter", "log", "comment", "limit")  # keys that match every packet


@dataclass(frozen=True)
class Drop:
    where: str  # "nft ip filter FORWARD" or "iptables-legacy FORWARD"
    paths: Tuple[str, ...]  # IPV4 / IPV6 / BRIDGE: which traffic the chain sees
    policy: bool  # the chain's policy (else a rule)
    unconditional: bool  # drops everything that reaches it
    rule: str  # which rule: "policy drop", "rule handle 5", or the iptables rule


def _is_verdict(expr: dict, verdicts) -> bool:
    return any(key in expr for key in verdicts)


def nft_drops(ruleset_json: str) -> List[Drop]:
    """Drops on the forward path in an `nft -j list ruleset`: base chains on the forward
    hook whose policy is drop, and drop/reject rules in them or in chains they jump to."""
    items = json.loads(ruleset_json or "{}").get("nftables", [])
    chains: Dict[Tuple[str, str, str], dict] = {}
    rules: Dict[Tuple[str, str, str], List[dict]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    drops: List[Drop] = []
    for key, chain in chains.items():
        family = key[0]
        if chain.get("hook") != "forward" or family not in _FAMILY_PATHS:
            continue
        paths = _FAMILY_PATHS[family]
        base = f"nft {family} {key[1]} {key[2]}"
        if chain.get("policy") == "drop":
            drops.append(Drop(base, paths, True, True, "policy drop"))
        seen = set()
        todo = [(key, True)]
        while todo:
            current, is_base = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for rule in rules.get(current, []):
                exprs = rule.get("expr", [])
                for expr in exprs:
                    for jump in ("jump", "goto"):
                        if jump in expr and isinstance(expr[jump], dict):
                            todo.append(((family, key[1], expr[jump].get("target")), False))
                if any(_is_verdict(e, _DROPS) for e in exprs):
                    unconditional = is_base and all(
                        _is_verdict(e, _DROPS + _UNCONDITIONAL) for e in exprs)
                    where = f"nft {family} {key[1]} {current[2]}"
                    drops.append(Drop(where, paths, False, unconditional,
                                      f"rule handle {rule.get('handle')}"))
    return drops


def iptables_drops(save: str, path: str, command: str) -> List[Drop]:
    """Drops in `iptables -S FORWARD` (or ip6tables) output: `-P FORWARD DROP` and
    `-A FORWARD ... -j DROP|REJECT` (a rule with nothing before -j drops everything)."""
    drops = []
    for line in save.splitlines():
        words = line.split()
        if words[:3] == ["-P", "FORWARD", "DROP"]:
            drops.append(Drop(f"{command} FORWARD", (path,), True, True, "policy DROP"))
        elif words[:2] == ["-A", "FORWARD"] and "-j" in words:
            target = words[words.index("-j") + 1] if words.index("-j") + 1 < len(words) else ""
            if target in ("DROP", "REJECT"):
                unconditional = words.index("-j") == 2
                drops.append(Drop(f"{command} FORWARD", (path,), False, unconditional, line))
    return drops
