"""libvirt's session mode (qemu:///session): libvirtd runs as an unprivileged user
(nobody) in the test's network namespace, and a domain's
`<interface type='bridge'><source bridge='br0'/>` gets its TAP from the root broker
through our bridge helper, which the session's qemu.conf names as `bridge_helper`.

In session mode libvirtd itself (not QEMU) runs the helper, as its own user and with
its whole environment, as `HELPER --use-vnet --br=BR --fd=N`, takes the TAP fd back and
gives it to QEMU (`-netdev tap,fd=`). Checked with `ip -j`, `bridge -j`, /sys, /proc,
the broker's log and the guest's console; nothing of the host is changed (no user is
added: libvirtd's HOME and XDG directories are a private directory nobody owns)."""

from __future__ import annotations

import json
import os
import pwd
import shutil

import pytest

import libvirttools
from brokertools import CONFIG, Broker
import qemutools
from conftest import BIN, GUEST_DIR, cannot_run, require_guest, sh
from qemutools import wait_for

HELPER = BIN / "qemu-ifhooks-bridge-helper"
USER = "nobody"
MAC = "52:54:00:16:00:0a"
class Lab:
    def __init__(self, host, lan, hooks, broker, request):
        self.host, self.lan, self.hooks, self.broker = host, lan, hooks, broker
        self.request = request
        self.base = hooks.dir.parent  # 0755, root's: the user reads, cannot write
        self.uid = pwd.getpwnam(USER).pw_uid
        # A copy the user can read wherever the guest was built.
        self.guest = self.base / "guest"
        self.guest.mkdir(mode=0o755)
        for name in ("vmlinuz", "initrd.img"):
            shutil.copyfile(GUEST_DIR / name, self.guest / name)
            os.chmod(self.guest / name, 0o644)
        self.home = self.base / "session"  # the session's HOME, made by start()
        self.daemon = None

    def start(self, helper=HELPER, **env: str) -> libvirttools.SessionLibvirtd:
        daemon = libvirttools.SessionLibvirtd(self.host, self.home, USER, helper,
                                              {"QEMU_IFHOOKS_BROKER": self.broker.socket, **env})
        self.request.addfinalizer(daemon.stop)  # before the broker's and the namespaces'
        daemon.start()
        self.daemon = daemon
        return daemon

    def create(self, name: str, bridge: str, cmdline: str, *options: str):
        """`virsh create` of a domain with one NIC on `bridge` (its console: in the
        session's home, where the user's QEMU may write)."""
        console = self.daemon.home / f"{name}.console"
        xml = self.base / f"{name}.xml"
        nic = (f"<interface type='bridge'><mac address='{MAC}'/><source bridge='{bridge}'/>"
               f"<model type='virtio'/></interface>")
        xml.write_text(libvirttools.domain_xml(name, self.guest, cmdline, [nic], console))
        return self.daemon.virsh("create", str(xml), *options, check=False), console

    def taps(self) -> list:
        return [l["ifname"] for l in self.host.links()
                if l.get("linkinfo", {}).get("info_kind") == "tun"]

    def qemu_pids(self) -> list:
        pids = []
        for pid in sh("ip", "netns", "pids", self.host.name).stdout.split():
            try:
                if open(f"/proc/{pid}/comm").read().startswith("qemu-system"):
                    pids.append(int(pid))
            except FileNotFoundError:
                pass
        return pids

    def grants(self) -> list:
        return [l.split("broker: ", 1)[1] for l in self.hooks.log_lines()
                if "broker: granted" in l]


@pytest.fixture
def lab(make_netns, hooks, request):
    require_guest()
    for tool in ("libvirtd", "virsh"):
        if shutil.which(tool) is None:
            cannot_run(f"needs {tool} (apt-get install {libvirttools.PACKAGES})")
    if shutil.which("setpriv") is None:
        cannot_run("needs setpriv (apt-get install util-linux)")
    host, lan = qemutools.make_lab(make_netns, "qih-ses")
    hooks.write_config(CONFIG)
    hooks.log.touch()
    broker = Broker(host, hooks, request)
    return Lab(host, lan, hooks, broker, request)


def net_ns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def proc_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(l for l in status if l.startswith("Uid:")).split()[1])


def held_taps(pid: int) -> list:
    """The TAPs whose /dev/net/tun fds the process holds (the kernel's fdinfo)."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                names += [l.split()[1] for l in info if l.startswith("iff:")]
        except FileNotFoundError:
            pass
    return names


def test_session_domain_on_a_bridge_gets_its_tap_from_the_broker_and_pings_the_lan(lab):
    daemon = lab.start()
    done, console = lab.create("ses1", "br0", "console=ttyS0 panic=-1 quiet "
                               "qih.net=192.0.2.10/24,192.0.2.1 qih.wait=20 qih.stay=1")
    assert done.returncode == 0, (done.stderr, daemon.log_tail())
    assert daemon.domains() == ["ses1"]
    (tap,) = lab.taps()
    host = lab.host
    assert host.ports("br0") == sorted(["eth0", tap])
    assert int(host.run("cat", f"/sys/class/net/{tap}/owner", check=True).stdout) == lab.uid
    assert host.link(tap)["linkinfo"]["info_data"].get("vnet_hdr") in (True, None)
    qemus = lab.qemu_pids()
    assert len(qemus) == 1, [open(f"/proc/{p}/cmdline").read() for p in qemus]
    (qemu,) = qemus
    assert proc_uid(qemu) == lab.uid and proc_uid(daemon.pid) == lab.uid
    assert held_taps(qemu) == [tap]  # libvirtd gave QEMU the fd it got from the helper
    cmdline = open(f"/proc/{qemu}/cmdline").read().split("\0")
    assert any('"type":"tap","fd":' in arg for arg in cmdline), cmdline
    assert not any("bridge" in arg or "helper" in arg for arg in cmdline), cmdline
    # Broker, libvirtd and QEMU all in the test's namespace.
    assert {net_ns(lab.broker.pid), net_ns(daemon.pid), net_ns(qemu)} == \
        {os.stat(f"/run/netns/{host.name}").st_ino}
    (grant,) = lab.grants()
    assert grant.startswith(f"granted uid={lab.uid} pid=") and \
        grant.endswith(f" {tap} on vlan.0 (bridge br0)"), grant

    assert wait_for(lambda: "QIH-STAY" in qemutools.console_lines(console), 150), \
        qemutools.console_lines(console)
    assert qemutools.console_lines(console) == ["QIH-PING eth0 192.0.2.1 OK", "QIH-DONE",
                                                "QIH-STAY"]
    assert lab.lan.run("busybox", "ping", "-c", "2", "-w", "20", "192.0.2.10").returncode == 0
    fdb = json.loads(sh("bridge", "-n", host.name, "-j", "fdb", "show", "br", "br0").stdout)
    assert [e["ifname"] for e in fdb if e["mac"] == MAC] == [tap], fdb  # the guest's frames
    assert host.ports("br0") == sorted(["eth0", tap])  # still, while the domain ran

    assert tap in host.records()
    daemon.virsh("destroy", "ses1")
    assert wait_for(lambda: lab.taps() == [] and lab.qemu_pids() == [], 60), lab.taps()
    assert host.ports("br0") == ["eth0"]
    assert daemon.domains() == []
    assert wait_for(lambda: tap not in host.records(), 10)  # the broker swept it


def test_libvirtd_runs_the_helper_itself_as_its_user_with_its_environment(lab):
    """A wrapper that notes how it was run, then execs our helper (same PID, so the
    broker's caller is the process libvirtd started)."""
    seen = lab.home / "helper.seen"  # the user may write there
    wrapper = lab.base / "logging-helper"
    wrapper.write_text(f'#!/bin/sh\n{{ echo "pid=$$ ppid=$PPID uid=$(id -u)"; '
                       f'printf "%s\\n" "$@"; echo --; env; }} > {seen}\n'
                       f'exec {HELPER} "$@"\n')
    wrapper.chmod(0o755)
    daemon = lab.start(wrapper, QIH_SESSION_MARKER="1")
    done, _ = lab.create("ses2", "br0", "console=ttyS0 quiet", "--paused")
    assert done.returncode == 0, (done.stderr, daemon.log_tail())
    head, *rest = seen.read_text().splitlines()
    argv, env = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    ids = dict(word.split("=") for word in head.split())
    assert int(ids["ppid"]) == daemon.pid and int(ids["uid"]) == lab.uid, head
    assert argv[:2] == ["--use-vnet", "--br=br0"] and len(argv) == 3 and \
        argv[2].startswith("--fd="), argv
    # Not filtered as for <script> (where only LC_ALL PATH HOME USER LOGNAME pass):
    # the daemon's whole environment, so QEMU_IFHOOKS_BROKER reaches the helper.
    assert f"QEMU_IFHOOKS_BROKER={lab.broker.socket}" in env and "QIH_SESSION_MARKER=1" in env
    (tap,) = lab.taps()
    (grant,) = lab.grants()
    assert grant == f"granted uid={lab.uid} pid={ids['pid']} {tap} on vlan.0 (bridge br0)"
    assert lab.host.master_of(tap) == "br0"
    daemon.virsh("destroy", "ses2")
    assert wait_for(lambda: lab.taps() == [] and lab.qemu_pids() == [], 60), lab.taps()


def test_a_refusal_is_in_virshs_error_and_leaves_nothing(lab):
    """vlan.1 allows a group nobody is not in: the broker's one line reaches virsh
    through the helper's stderr, no domain, no TAP, no bridge."""
    daemon = lab.start()
    before = lab.host.snapshot()
    done, _ = lab.create("ses3", "br1", "console=ttyS0 quiet", "--paused")
    assert done.returncode == 1
    assert "failed to communicate with bridge helper" in done.stderr, done.stderr
    assert f"stderr=qemu-ifhooks: bridge-helper: user {USER} (uid {lab.uid}) may not use " \
           f"vlan.1 (bridge br1)" in done.stderr, done.stderr
    assert daemon.domains() == [] and lab.qemu_pids() == []
    assert lab.taps() == [] and lab.host.link("br1") is None
    assert lab.host.snapshot() == before
    refused = [l for l in lab.hooks.log_lines() if "broker: refused" in l]
    assert len(refused) == 1 and f"uid={lab.uid} " in refused[0], refused


def test_port_security_refuses_a_session_domain_in_one_line(lab):
    """libvirtd, not QEMU, runs the helper: no command line names the guest's MAC, so a
    port_security segment fails closed, with a line that says why, and leaves nothing."""
    lab.hooks.write_config(CONFIG.replace('allow_users = ["nobody"]\n',
                                          'allow_users = ["nobody"]\nport_security = "mac"\n'))
    daemon = lab.start()
    before = lab.host.snapshot()
    done, _ = lab.create("ses4", "br0", "console=ttyS0 quiet", "--paused")
    assert done.returncode == 1
    assert "stderr=qemu-ifhooks: bridge-helper: vlan.0 has port_security = \"mac\", which " \
           "needs the guest's MAC, and no QEMU with a NIC on -netdev bridge,br=br0 ran the " \
           "bridge helper (libvirt's session mode runs it itself)" in done.stderr, done.stderr
    assert daemon.domains() == [] and lab.qemu_pids() == [] and lab.taps() == []
    assert lab.host.snapshot() == before
    assert lab.host.run("nft", "list", "ruleset", check=True).stdout.strip() == ""
