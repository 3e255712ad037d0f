"""Scenery for 802.1Q tests in the full-kernel tier (tests/fullkernel.py): a namespace
class with the VLAN oracles (`bridge -j vlan`, pyroute2), and the wire: TAP fds held by
the test as QEMU holds them, and a capture on the far side of the uplink, as the LAN.

Used by test_vlan_netlink.py (the codec) and test_hook_vlans.py (the hooks).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from typing import Optional

import fullkernel
import frames
from conftest import Netns, sh

# pyroute2 oracle: per link IFLA_LINK, the VLAN id and the bridge VLAN settings, and
# per bridge port its VLANs (RTEXT_FILTER_BRVLAN dump), as JSON.
PYROUTE2_VLANS = r"""
import json
from pyroute2 import IPRoute
links, vlans = {}, {}
with IPRoute() as ipr:
    for l in ipr.get_links():
        data = l.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        get = data.get if data is not None and hasattr(data, "get") else (lambda key: None)
        links[l.get("IFLA_IFNAME")] = {
            "index": l["index"], "link": l.get("IFLA_LINK") or 0, "mtu": l.get("IFLA_MTU"),
            "kind": l.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"), "vlan_id": get("IFLA_VLAN_ID"),
            "vlan_filtering": get("IFLA_BR_VLAN_FILTERING"), "vlan_default_pvid": get("IFLA_BR_VLAN_DEFAULT_PVID"),
        }
    for m in ipr.get_vlans():
        spec = m.get("IFLA_AF_SPEC")
        infos = spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else []
        if infos:  # as `bridge vlan show`: only links with VLANs
            vlans[m.get("IFLA_IFNAME")] = [[i["vid"], bool(i["flags"] & 2), bool(i["flags"] & 4)] for i in infos]
print(json.dumps({"links": links, "vlans": vlans}))
"""


class VlanNetns(Netns):
    """Netns plus the oracles of this module."""

    def probe(self, ops: list, user=None) -> list:
        # In the full-kernel guest, where starting a Python costs about a second, the
        # same nl_probe.run() runs in this (single-threaded) process, in the namespace.
        if user is None and fullkernel.in_vm():
            import nl_probe

            with frames.netns_entered(self.name):
                return json.loads(json.dumps(nl_probe.run(ops)))
        return super().probe(ops, user)

    def index(self, name: str) -> int:
        return self.link(name)["ifindex"]

    def vlans(self) -> dict:
        """`bridge -j vlan show` as {ifname: [[vid, pvid, untagged], ...]}."""
        out = sh("bridge", "-n", self.name, "-j", "vlan", "show").stdout
        return {
            port["ifname"]: [[v["vlan"], "PVID" in v.get("flags", []), "Egress Untagged" in v.get("flags", [])]
                             for v in port["vlans"]]
            for port in json.loads(out or "[]")
        }

    def pyroute2(self) -> dict:
        return json.loads(self.run(sys.executable, "-c", PYROUTE2_VLANS, check=True, cwd="/").stdout)

    def wait_forwarding(self, *ports: str, timeout: float = 5) -> None:
        """Wait until the bridge forwards on every port.  A port joins disabled when
        its operstate is not up yet, and the kernel updates that asynchronously
        (linkwatch), e.g. just after a VLAN subinterface came up."""
        deadline = time.monotonic() + timeout
        while True:
            out = sh("bridge", "-n", self.name, "-j", "link", "show").stdout
            states = {p["ifname"]: p.get("state") for p in json.loads(out or "[]")}
            if all(states.get(port) == "forwarding" for port in ports):
                return
            assert time.monotonic() < deadline, f"ports not forwarding after {timeout} s: {states}"
            time.sleep(0.05)


LAN_MAC = frames.mac("02:00:00:00:0f:01")


def guest_mac(key: int) -> bytes:
    """The source MAC of the guest behind TAP `key` (02:00:00:00:01:01 for 101)."""
    return frames.mac(f"02:00:00:00:{key // 100:02x}:{key % 100:02x}")


class Wire:
    """The test's ends of the network: the TAP fds (by VLAN), as a guest's NICs, and
    a Capture on the far end of the uplink, as the LAN."""

    def __init__(self, taps: dict, lan: frames.Capture) -> None:
        self.taps, self.lan = taps, lan

    def exchange(self, send, place, marker: bytes) -> dict:
        """Call send(), then collect the test frames (the experimental ethertype) that
        reach the LAN ("lan") and each TAP (by VLAN) until the one carrying `marker`
        is at `place`, 3 s at most, and 0.3 s longer for anything else in flight."""
        send()
        got = {"lan": [], **{vid: [] for vid in self.taps}}

        def collect() -> None:
            got["lan"] += [f for f in self.lan.frames(timeout=0.02) if f.ethertype == frames.ETH_P_EXPERIMENTAL]
            for vid, fd in self.taps.items():
                got[vid] += [f for f in frames.read_tap(fd, timeout=0) if f.ethertype == frames.ETH_P_EXPERIMENTAL]

        deadline = time.monotonic() + 3
        while not [f for f in got[place] if f.carries(marker)] and time.monotonic() < deadline:
            collect()
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            collect()
        return got

    def from_guest(self, key: int, *, tag: Optional[int] = None) -> tuple:
        """A broadcast from TAP `key` (tagged `tag` by the guest itself, if given):
        (frames carrying it by place, the frame)."""
        marker = f"guest-{key}-{tag}-{uuid.uuid4().hex}".encode()
        frame = frames.ethernet_frame(frames.BROADCAST, guest_mac(key), marker, vid=tag)
        got = self.exchange(lambda: os.write(self.taps[key], frame), "lan", marker)
        return {place: [f for f in frames if f.carries(marker)] for place, frames in got.items()}, frame

    def from_lan(self, vid, *, sentinel: int = 101) -> dict:
        """A broadcast from the LAN tagged `vid` (None: untagged): frames carrying it by
        place.  A frame tagged `sentinel` follows it, and collecting ends once that one
        is through: what the first frame reaches, it has reached by then."""
        marker, last = (f"lan-{vid}-{uuid.uuid4().hex}".encode() for _ in range(2))
        frame = frames.ethernet_frame(frames.BROADCAST, LAN_MAC, marker, vid=vid)
        after = frames.ethernet_frame(frames.BROADCAST, LAN_MAC, last, vid=sentinel)
        got = self.exchange(lambda: (self.lan.send(frame), self.lan.send(after)), sentinel, last)
        assert [f for f in got[sentinel] if f.carries(last)], f"the sentinel frame (VLAN {sentinel}) got lost"
        return {place: [f for f in frames if f.carries(marker)] for place, frames in got.items()}


@contextlib.contextmanager
def wire(make_netns, host: VlanNetns, uplink: str, vids, *, gro: bool = False):
    """Build the far side (a namespace with the veth peer `lan0` of the `uplink` left
    in `host`, GRO on if `gro`, as on a real NIC) and TAPs tap<vid> in `host` held by
    this process, as QEMU holds them; yield a Wire."""
    far = make_netns("qih-far", kind=VlanNetns)
    host.ip("link", "add", uplink, "type", "veth", "peer", "name", "lan0")
    if gro:
        host.run("ethtool", "-K", uplink, "gro", "on", check=True)
    host.ip("link", "set", "lan0", "netns", far.name)
    far.ip("link", "set", "lan0", "up")
    taps, lan = {}, None
    try:
        with frames.netns_entered(host.name):
            for vid in vids:
                taps[vid] = frames.open_tap(f"tap{vid}")
        with frames.netns_entered(far.name):
            lan = frames.Capture("lan0")
        yield Wire(taps, lan)
    finally:
        if lan is not None:
            lan.close()
        for fd in taps.values():
            os.close(fd)
