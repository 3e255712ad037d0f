"""Hypervisors in namespaces: a switch namespace joins the hosts' underlay links
(203.0.113.0/24); each host has its own config and hook entries, optionally FRR's
zebra and bgpd (started and stopped here, by PID), and guests: a namespace behind a
veth, or real QEMU. Everything is checked with iproute2 and vtysh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from conftest import Hooks, Netns, cannot_run, sh
from qemutools import wait_for

VNI = 5007
PORT = f"vxlan{VNI}"
BRIDGE = "br7"
UNDERLAY_NET = "203.0.113"
GROUP = "239.1.1.7"
ASN = 65000
FRR_BIN = Path("/usr/lib/frr")
FRR_RUN = Path("/var/run/frr")


def underlay_address(i: int) -> str:
    return f"{UNDERLAY_NET}.{i}"


class Host:
    """One hypervisor: a namespace, its hooks and config."""

    def __init__(self, index: int, ns: Netns, hooks: Hooks):
        self.index, self.ns, self.hooks = index, ns, hooks
        self.address = underlay_address(index)
        self.frr_pids: List[int] = []

    def config(self, mode: str, count: int, mtu: Optional[int] = None,
               remotes: Optional[List[str]] = None) -> str:
        others = [underlay_address(i) for i in range(1, count + 1) if i != self.index]
        how = {"static": f"remotes = {json.dumps(others if remotes is None else remotes)}",
               "multicast": f'group = "{GROUP}"', "evpn": "evpn = true"}[mode]
        text = (f'[vlan.7]\nbridge = "{BRIDGE}"\n'
                + (f"mtu = {mtu}\n" if mtu else "")
                + f'vxlan = {{ vni = {VNI}, local = "{self.address}", dev = "eth0", {how} }}\n')
        if mode == "evpn":
            text += (f"\n[evpn]\nasn = {ASN}\npeers = {json.dumps(others)}\n"
                     f'pathspace = "{self.ns.name}"\n')
        return text

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.hooks.cli(self.ns, *args)

    def fdb(self, dev: str = PORT) -> List[dict]:
        return json.loads(sh("bridge", "-n", self.ns.name, "-j", "fdb", "show", "dev", dev).stdout
                          or "[]")

    def flood(self) -> List[str]:
        return sorted(e["dst"] for e in self.fdb() if e["mac"] == "00:00:00:00:00:00"
                      and "dst" in e)

    def remote_macs(self) -> Dict[str, dict]:
        return {e["mac"]: e for e in self.fdb() if e.get("dst") and
                e["mac"] != "00:00:00:00:00:00"}

    def vtysh(self, command: str):
        done = sh("vtysh", "-N", self.ns.name, "-c", command, check=False)
        try:
            return json.loads(done.stdout)
        except ValueError:
            return None

    # --- FRR ----------------------------------------------------------------------------
    def start_frr(self, workdir: Path, bgpd_conf: str) -> None:
        """zebra and bgpd in this namespace, their runtime dir /var/run/frr/<ns>; config
        files in the test's directory (never /etc/frr)."""
        rundir = FRR_RUN / self.ns.name
        rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(rundir, "frr", "frr")
        for daemon, text in (("zebra", f"hostname {self.ns.name}\n"),
                             ("bgpd", f"hostname {self.ns.name}\n{bgpd_conf}")):
            conf = workdir / f"{self.ns.name}-{daemon}.conf"
            conf.write_text(text)
            os.chmod(conf, 0o644)
            # Not through pipes: a daemon that keeps the stdio it was started with (FRR 10
            # does) would hold them open, and reading them to the end would never return.
            with open(workdir / f"{self.ns.name}-{daemon}.start", "w+") as out:
                done = subprocess.run(["ip", "netns", "exec", self.ns.name, str(FRR_BIN / daemon), "-d",
                                       "-N", self.ns.name, "-f", str(conf), "--log",
                                       f"file:{rundir}/{daemon}.log", "-A", "127.0.0.1"],
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=60)
                out.seek(0)
                assert done.returncode == 0, (daemon, out.read())
            pidfile = rundir / f"{daemon}.pid"
            assert wait_for(pidfile.exists, 20), f"{daemon} wrote no pid file"
            self.frr_pids.append(int(pidfile.read_text().split()[0]))

    def stop_frr(self) -> None:
        for pid in self.frr_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in self.frr_pids:
            if not wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10):
                os.kill(pid, signal.SIGKILL)
        self.frr_pids = []
        shutil.rmtree(FRR_RUN / self.ns.name, ignore_errors=True)


class Fabric:
    """`count` hosts on a switch; guests as namespaces behind veths."""

    def __init__(self, make_netns, count: int = 3, underlay_mtu: int = 1550):
        self.dir = Path(tempfile.mkdtemp(prefix="qemu-ifhooks-vxlan."))
        os.chmod(self.dir, 0o755)
        self.switch = make_netns("qih-sw")
        # A dumb switch: multicast flooded to every port, as without IGMP snooping.
        self.switch.bridge("sw", "mcast_snooping", "0")
        self.hosts: List[Host] = []
        self.guests: Dict[int, Netns] = {}
        self.make_netns = make_netns
        for i in range(1, count + 1):
            ns = make_netns(f"qih-h{i}")
            ns.ip("link", "add", "eth0", "mtu", str(underlay_mtu), "type", "veth", "peer",
                  "name", f"p{i}", "mtu", str(underlay_mtu))
            ns.ip("link", "set", f"p{i}", "netns", self.switch.name)
            self.switch.ip("link", "set", f"p{i}", "master", "sw", "up")
            ns.ip("addr", "add", f"{underlay_address(i)}/24", "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")
            self.hosts.append(Host(i, ns, Hooks(self.dir / f"h{i}")))
        for host in self.hosts:  # carrier settled: snapshots taken later stay comparable
            assert wait_for(lambda: host.ns.link("eth0")["operstate"] == "UP", 10)

    def configure(self, mode: str, **kwargs) -> None:
        for host in self.hosts:
            host.hooks.write_config(host.config(mode, len(self.hosts), **kwargs))

    def up(self) -> None:
        for host in self.hosts:
            done = host.cli("up")
            assert done.returncode == 0, done.stderr

    def guest_ns(self, host: Host, address: str) -> Netns:
        """A guest as a namespace: a veth into the host, enslaved to the bridge here (by
        the test: the hooks only take TAPs)."""
        guest = self.make_netns(f"qih-g{host.index}")
        dev = f"vm{host.index}"
        host.ns.ip("link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns",
                   guest.name)
        host.ns.ip("link", "set", dev, "master", BRIDGE, "up")
        guest.ip("addr", "add", f"{address}/24", "dev", "eth0")
        guest.ip("link", "set", "eth0", "up")
        self.guests[host.index] = guest
        return guest

    def cleanup(self) -> None:
        for host in self.hosts:
            host.stop_frr()
        shutil.rmtree(self.dir, ignore_errors=True)
        from qemu_ifhooks.configcache import cache_path

        for host in self.hosts:
            try:
                os.unlink(cache_path(str(host.hooks.config)))
            except OSError:
                pass


def ping(ns: Netns, address: str, size: int = 56, deadline: int = 10) -> bool:
    """busybox ping until one reply or `deadline` seconds; the kernel sets DF (path MTU
    discovery), so a packet too big for the path is dropped, not fragmented."""
    done = ns.run("busybox", "ping", "-c", "1", "-w", str(deadline), "-s", str(size), address)
    return done.returncode == 0


def require_frr() -> None:
    for program in (FRR_BIN / "zebra", FRR_BIN / "bgpd"):
        if not program.exists():
            cannot_run(f"needs {program} (apt-get install frr)")
    if shutil.which("vtysh") is None:
        cannot_run("needs vtysh (apt-get install frr)")


def start_fabric_frr(fabric: Fabric) -> None:
    """zebra and bgpd on every host, bgpd's config being what `frr-config` prints."""
    require_frr()
    for host in fabric.hosts:
        stanza = host.cli("frr-config")
        assert stanza.returncode == 0, stanza.stderr
        host.start_frr(fabric.dir, stanza.stdout)


def evpn_ready(host: Host, peers: int) -> bool:
    summary = host.vtysh("show bgp l2vpn evpn summary json") or {}
    peer_info = summary.get("peers", {})
    if not peer_info:
        for value in summary.values():
            if isinstance(value, dict) and "peers" in value:
                peer_info = value["peers"]
    established = [p for p, i in peer_info.items() if i.get("state") == "Established"]
    vnis = host.vtysh("show evpn vni json") or {}
    return len(established) == peers and str(VNI) in vnis


def wait_evpn(fabric: Fabric, timeout: float = 90) -> None:
    n = len(fabric.hosts) - 1
    deadline = time.monotonic() + timeout
    for host in fabric.hosts:
        while not evpn_ready(host, n):
            assert time.monotonic() < deadline, (
                host.ns.name, host.vtysh("show bgp l2vpn evpn summary json"),
                host.vtysh("show evpn vni json"))
            time.sleep(1)


def poll(predicate, timeout: float, step: float = 0.5) -> bool:
    """wait_for with a slower step, for predicates that run commands."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
