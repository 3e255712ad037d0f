"""BGP EVPN through FRR: the `[evpn]` table, the stanza `qemu-ifhooks frr-config` prints
for the admin to merge into frr.conf, and what `check` asks bgpd and zebra (vtysh's
JSON). FRR stays in charge of routing: qemu-ifhooks never writes its config or starts
its daemons.

The stanza is what FRR's EVPN guide and Proxmox's EVPN controller write for a VXLAN
fabric without a route reflector: iBGP between the hosts in the `l2vpn evpn` family
only (no IPv4 unicast routes are exchanged), `advertise-all-vni` so zebra announces
every VNI whose VXLAN link sits on a bridge, with this host's MACs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any, Optional, Tuple

from .errors import ConfigError
from .record import Record
from .vxlan import EvpnConfig, ip_family

VTYSH_TIMEOUT = 10  # seconds


def evpn_segments(config) -> list:
    return [s for s in config.bridges() if s.vxlan is not None and s.vxlan.evpn]


def frr_stanza(config) -> str:
    """The frr.conf lines this host needs for its EVPN segments."""
    evpn: Optional[EvpnConfig] = config.evpn
    if evpn is None:
        raise ConfigError(f"{config.path}: evpn: missing: add an [evpn] table with asn and "
                          f"peers (see qemu-ifhooks.toml(5))")
    segments = evpn_segments(config)
    locals_ = sorted({s.vxlan.local for s in segments})
    router_id = evpn.router_id or next((a for a in locals_ if ip_family(a) == ip_family("0.0.0.0")),
                                       None)
    vnis = ", ".join(f"{s.vxlan.vni} ({s.key}, {s.bridge})" for s in segments) or "none yet"
    lines = [f"! qemu-ifhooks: BGP EVPN for VNIs {vnis}",
             "! merge into /etc/frr/frr.conf (bgpd and zebra enabled in /etc/frr/daemons)",
             f"router bgp {evpn.asn}"]
    if router_id:
        lines.append(f" bgp router-id {router_id}")
    lines.append(" no bgp default ipv4-unicast")
    lines += [f" neighbor {peer} remote-as {evpn.asn}" for peer in evpn.peers]
    lines.append(" !")
    lines.append(" address-family l2vpn evpn")
    lines += [f"  neighbor {peer} activate" for peer in evpn.peers]
    lines.append("  advertise-all-vni")
    lines.append(" exit-address-family")
    lines.append("exit")
    return "\n".join(lines) + "\n"


# --- what bgpd and zebra say (check) ----------------------------------------------------

class EvpnState(Record):
    """vtysh's answers, or why there are none."""

    __slots__ = (
        "error",  # None, or why FRR could not be asked (not installed, bgpd not running)
        "sessions",  # tuple of (peer, state) of the l2vpn evpn neighbours
        "vnis",  # tuple of the VNIs zebra knows
    )
    _defaults = {"error": None, "sessions": (), "vnis": ()}


def vtysh(command: str, pathspace: Optional[str]) -> Tuple[Optional[Any], Optional[str]]:
    program = shutil.which("vtysh")
    if program is None:
        return None, "vtysh is not installed (apt-get install frr)"
    argv = [program] + (["-N", pathspace] if pathspace else []) + ["-c", command]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=VTYSH_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    text = done.stdout.strip()
    if done.returncode != 0 or not text.startswith(("{", "[")):
        why = (done.stderr.strip() or text or f"exit status {done.returncode}").splitlines()[0]
        return None, why
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"unreadable JSON from vtysh: {e}"


def read_evpn_state(pathspace: Optional[str]) -> EvpnState:
    summary, error = vtysh("show bgp l2vpn evpn summary json", pathspace)
    if summary is None:
        return EvpnState(error=f"cannot ask bgpd: {error}")
    vnis, error = vtysh("show evpn vni json", pathspace)
    if vnis is None:
        return EvpnState(error=f"cannot ask zebra: {error}")
    return EvpnState(None, sessions_of(summary), tuple(sorted(int(v) for v in vnis)))


def sessions_of(summary: Any) -> tuple:
    """(peer, state) pairs from `show bgp l2vpn evpn summary json` (FRR 8 nests the
    peers under the address family, some versions do not)."""
    if isinstance(summary, dict) and "peers" not in summary:
        summary = next((v for v in summary.values() if isinstance(v, dict) and "peers" in v), {})
    peers = summary.get("peers", {}) if isinstance(summary, dict) else {}
    return tuple(sorted((peer, str(info.get("state", "?"))) for peer, info in peers.items()))
