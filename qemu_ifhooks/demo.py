"""`qemu-ifhooks demo`: the seed article's two-VLAN host, for real, in throwaway
network namespaces.

  namespace "host" (the VM host)               namespace "lan" (the physical network)
    br0 ── eth0 (uplink, veth) ──────────────── lan0  192.0.2.1/24
    br1 ── eth1 (uplink, veth) ──────────────── lan1  198.51.100.1/24
    tap0 (QEMU NIC on vlan 0) in br0, tap1 (QEMU NIC on vlan 1) in br1

The hooks build br0/br1 on first use, attach the TAPs, and detach them when QEMU quits.
With a guest kernel the guest pings 192.0.2.1 over its first NIC and 198.51.100.1 over
its second. Nothing outside the two namespaces and a temporary directory is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from .configfile import load_config
from .errors import ExitStatus, PermissionDenied, UnavailableError
from .install import describe, install, read_launcher

CONFIG = """\
# The seed's two QEMU VLANs: one bridge each, each with its own uplink adapter.
[defaults]
offload_check = "enforce"   # refuse to bridge an uplink with LRO on or GRO off

[vlan.0]
bridge = "br0"
uplink = "eth0"

[vlan.1]
bridge = "br1"
uplink = "eth1"
"""
NICS = [  # (vlan, tap, bridge, mac, guest address, peer on the LAN)
    (0, "tap0", "br0", "00:16:3e:00:01:01", "192.0.2.10/24", "192.0.2.1"),
    (1, "tap1", "br1", "00:16:3e:00:01:02", "198.51.100.10/24", "198.51.100.1"),
]
LAN = [("eth0", "lan0", "192.0.2.1/24"), ("eth1", "lan1", "198.51.100.1/24")]
GUEST_TIMEOUT = 120  # seconds; the guest boots, pings and powers off in about 6-10 s


def say(text: str) -> None:
    print(text, flush=True)


def sh(*argv: str) -> str:
    """Run a command of the demo's own set-up; show it when it fails."""
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise UnavailableError(f"'{' '.join(argv)}' failed: {done.stderr.strip()}")
    return done.stdout


def find_guest(guest_dir: Optional[str]) -> Optional[str]:
    source_tree = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "build", "guest")
    for directory in [guest_dir] if guest_dir else [source_tree, "/usr/share/qemu-ifhooks/guest"]:
        if directory and all(os.path.isfile(os.path.join(directory, f))
                             for f in ("vmlinuz", "initrd.img")):
            return directory
    return None


class Demo:
    def __init__(self, workdir: str):
        self.workdir = workdir
        suffix = f"{os.getpid()}"
        self.host = f"qih-demo-host-{suffix}"
        self.lan = f"qih-demo-lan-{suffix}"
        self.qemu: Optional[subprocess.Popen] = None

    def build_network(self) -> None:
        say(f"1. A throwaway host ({self.host}) and physical network ({self.lan}):")
        for ns in (self.host, self.lan):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for uplink, peer, address in LAN:
            sh("ip", "-n", self.host, "link", "add", "name", uplink, "type", "veth",
               "peer", "name", peer, "netns", self.lan)
            sh("ip", "-n", self.lan, "addr", "add", address, "dev", peer)
            sh("ip", "-n", self.lan, "link", "set", peer, "up")
            sh("ip", "-n", self.host, "link", "set", uplink, "up")
            # A veth starts with GRO off; a real NIC has it on, and the hooks insist.
            sh("ip", "netns", "exec", self.host, "ethtool", "-K", uplink, "gro", "on")
            say(f"   uplink {uplink} (GRO on, LRO off) -> {peer} {address}")

    def write_config(self) -> str:
        path = os.path.join(self.workdir, "qemu-ifhooks.toml")
        with open(path, "w") as f:
            f.write(CONFIG)
        os.chmod(path, 0o644)
        say(f"\n2. The config ({path}):")
        for line in CONFIG.splitlines():
            say(f"   {line}")
        return path

    def install_hooks(self, config_path: str) -> str:
        hooks = os.path.join(self.workdir, "hooks")
        say("\n3. qemu-ifhooks install --dir " + hooks)
        for path in install(load_config(config_path), hooks, force=False):
            say(f"   {path}: runs {describe(*read_launcher(path))}")
        return hooks

    def qemu_command(self, hooks: str, guest: Optional[str]) -> List[str]:
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults",
                "-display", "none", "-no-reboot", "-name", "qemu-ifhooks-demo",
                "-monitor", "stdio", "-serial",
                f"file:{os.path.join(self.workdir, 'console.log')}"]
        for vlan, tap, bridge, mac, _, _ in NICS:
            argv += ["-netdev", f"tap,id=net{vlan},ifname={tap},"
                                f"script={hooks}/ifup-{bridge},downscript={hooks}/ifdown-{bridge}",
                     "-device", f"virtio-net-pci,netdev=net{vlan},mac={mac}"]
        if guest is None:
            return argv + ["-S"]  # no guest: QEMU still creates the TAPs and runs the hooks
        nets = ";".join(f"{address},{peer}" for _, _, _, _, address, peer in NICS)
        return argv + ["-kernel", os.path.join(guest, "vmlinuz"),
                       "-initrd", os.path.join(guest, "initrd.img"),
                       "-append", f"console=ttyS0 panic=-1 quiet qih.net={nets} qih.wait=15"]

    def start_qemu(self, argv: List[str], config_path: str) -> None:
        env = dict(os.environ, QEMU_IFHOOKS_CONFIG=config_path,
                   QEMU_IFHOOKS_LOG=os.path.join(self.workdir, "hooks.log"))
        say("\n4. QEMU with one NIC per VLAN (as the seed, in -netdev/-device syntax):")
        say("   " + " ".join(a if " " not in a and ";" not in a else repr(a) for a in argv))
        self.qemu = subprocess.Popen(["ip", "netns", "exec", self.host] + argv, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def ports(self) -> dict:
        """TAP -> bridge, as iproute2's `bridge` reports it (not the project's reader)."""
        out = sh("bridge", "-n", self.host, "-j", "link")
        return {p["ifname"]: p.get("master") for p in json.loads(out or "[]")}

    def wait_attached(self) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ports = self.ports()
            if all(ports.get(tap) == bridge for _, tap, bridge, _, _, _ in NICS):
                return ports
            if self.qemu and self.qemu.poll() is not None:
                break
            time.sleep(0.1)
        return self.ports()

    def show_ports(self, ports: dict) -> bool:
        say("\n5. Who is on which bridge (bridge -j link):")
        ok = True
        for vlan, tap, bridge, _, _, _ in NICS:
            master = ports.get(tap)
            ok &= master == bridge
            say(f"   vlan {vlan}: {tap} -> {master or 'not attached'}"
                f"{'' if master == bridge else f'   (expected {bridge})'}")
        for name, master in sorted(ports.items()):
            if name.startswith("eth"):
                say(f"   uplink {name} -> {master}")
        return ok

    def stop_qemu(self, guest: bool) -> str:
        assert self.qemu is not None
        if guest:
            say("\n6. The guest pings the LAN over each NIC, then powers off:")
        else:
            say("\n6. quit on the QEMU monitor runs the downscripts:")
            self.qemu.stdin.write("quit\n")
            self.qemu.stdin.flush()
        try:
            _, stderr = self.qemu.communicate(timeout=GUEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            _, stderr = self.qemu.communicate()
            stderr += "\n(QEMU did not finish in time and was stopped)"
        return stderr

    def guest_results(self) -> bool:
        try:
            with open(os.path.join(self.workdir, "console.log"), errors="replace") as f:
                lines = [line.strip() for line in f if line.startswith("QIH-PING")]
        except OSError:
            lines = []
        for line in lines:
            _, ifname, peer, result = line.split()
            say(f"   guest {ifname} ping {peer}: {result}")
        return len(lines) == len(NICS) and all(line.endswith(" OK") for line in lines)

    def hook_log(self) -> bool:
        say("\n7. What the hooks did (QEMU_IFHOOKS_LOG; the same lines go to syslog):")
        try:
            with open(os.path.join(self.workdir, "hooks.log")) as f:
                lines = [line.split(": ", 1)[1].rstrip() for line in f]
        except OSError:
            lines = []
        for line in lines:
            say(f"   {line}")
        downs = [line for line in lines if line.startswith("action=ifdown") and "result=ok" in line]
        return len(downs) == len(NICS)

    def cleanup(self) -> None:
        if self.qemu and self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()
        for ns in (self.host, self.lan):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def run_demo(guest_dir: Optional[str], with_guest: bool, verbose: bool) -> int:
    if os.geteuid() != 0:
        raise PermissionDenied("the demo creates network namespaces: run it as root")
    for tool in ("qemu-system-x86_64", "ip", "bridge", "ethtool"):
        if shutil.which(tool) is None:
            raise UnavailableError(f"{tool} not found; 'make demo' installs what the demo needs")
    guest = find_guest(guest_dir) if with_guest else None
    if with_guest and guest is None:
        say("(no guest kernel found: 'make guest' builds one; QEMU runs without a guest)\n")
    workdir = tempfile.mkdtemp(prefix="qemu-ifhooks-demo.")
    demo = Demo(workdir)
    try:
        demo.build_network()
        config_path = demo.write_config()
        hooks = demo.install_hooks(config_path)
        demo.start_qemu(demo.qemu_command(hooks, guest), config_path)
        attached = demo.show_ports(demo.wait_attached())
        stderr = demo.stop_qemu(guest is not None)
        pinged = demo.guest_results() if guest else True
        detached = demo.hook_log()
        if stderr.strip():
            say("\nQEMU said:\n   " + "\n   ".join(stderr.strip().splitlines()))
        ok = attached and pinged and detached
        say(f"\n{'OK' if ok else 'FAILED'}: hooks attached both TAPs"
            f"{', the guest reached both LANs' if guest else ''}, and detached them on exit."
            if ok else "\nFAILED: see above.")
        return ExitStatus.OK if ok else ExitStatus.FAILED
    finally:
        demo.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
        if verbose:
            print(f"cleaned up {demo.host}, {demo.lan} and {workdir}", file=sys.stderr)
