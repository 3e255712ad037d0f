"""What guards the TAPs now: their rules in the bridge table and their ifb devices,
read for `status` and `check`, and swept by `up` and `down` once their TAP is gone.

A VM killed without its downscript leaves both behind: the bridge table keeps the
rules of its TAP name, and the ifb devices outlive the TAP.
"""

from __future__ import annotations

from typing import Dict, Iterable, List

from .guardops import RemovePortRules, Unshape
from .linkbuild import list_links
from .netlink import Link, Netlink
from .ops import Op

IFB_MARK = "qemu-ifhooks: "


def guarded_taps() -> List[str]:
    """TAP names the bridge table holds rules for; [] where nf_tables cannot say."""
    from .nftables import Nftables

    try:
        with Nftables() as nft:
            return nft.ports()
    except OSError:
        return []


def shaped_taps(links: Iterable[Link]) -> Dict[str, List[str]]:
    """{TAP name: its ifb devices}, from the alias each ifb among `links` carries."""
    out: Dict[str, List[str]] = {}
    for link in links:
        alias = link.alias or ""
        if link.kind == "ifb" and alias.startswith(IFB_MARK):
            tap = alias.split(" of ", 1)[1] if " of " in alias else ""
            out.setdefault(tap, []).append(link.name)
    return out


def leftovers(nl: Netlink) -> List[Op]:
    """What removes rules and ifb devices whose TAP is gone."""
    links = list_links(nl)
    present = {link.name for link in links}
    ops: List[Op] = [RemovePortRules(tap) for tap in guarded_taps() if tap not in present]
    ops += [Unshape(tap) for tap in shaped_taps(links) if tap not in present]
    return ops
