"""Port security and isolation with real QEMU guests (the busybox guest of the demo,
TCG): the hooks QEMU runs guard each TAP, and what the guests can reach is what they
print on their consoles after pinging (tools/guest-init.sh).

Scenes: an allowed guest pings the LAN; a guest that changes its MAC, or uses an
address it was not given, cannot; a DHCP client gets a lease from a server in the LAN
namespace and pings with it; the guest's MAC is taken from QEMU's own command line; a
VM killed with SIGKILL is followed by one with the same TAP name and another MAC, whose
MAC passes; two guests on an isolated segment reach the LAN, not each other.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

import qemutools
from conftest import CLI, GUEST_DIR, require_guest, sh

LAN = "192.0.2.1"
CONFIG = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"
port_security = "{mode}"
isolated = {isolated}
{ports}"""


@pytest.fixture
def lab(make_netns, hooks):
    require_guest()
    host, lan = make_netns("qih-gps"), make_netns("qih-glan")
    host.veth("eth0", "lan0")
    host.ip("link", "set", "lan0", "netns", lan.name)
    lan.ip("addr", "add", f"{LAN}/24", "dev", "lan0")
    lan.ip("link", "set", "lan0", "up")
    return host, lan, hooks


def write_config(hooks, mode="ip", isolated=False, ports=""):
    hooks.write_config(CONFIG.format(mode=mode, isolated=str(isolated).lower(), ports=ports))
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())


def port(tap, mac=None, ipv4=()):
    lines = [f'[port."{tap}"]'] + ([f'mac = "{mac}"'] if mac else []) + [f"ipv4 = {json.dumps(list(ipv4))}"]
    return "\n".join(lines) + "\n"


def guest(host, hooks, request, tmp_path, name, tap, mac, net, wait=8):
    """A booted guest with one NIC on br0 through the installed hooks."""
    console = tmp_path / f"{name}.log"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none",
            "-no-reboot", "-name", name, "-monitor", "none",
            "-netdev", f"tap,id=n0,ifname={tap},script={hooks.dir}/ifup-br0,downscript={hooks.dir}/ifdown-br0",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            "-serial", f"file:{console}", "-kernel", str(GUEST_DIR / "vmlinuz"),
            "-initrd", str(GUEST_DIR / "initrd.img"),
            "-append", f"console=ttyS0 panic=-1 quiet qih.net={net} qih.wait={wait}"]
    qemu = qemutools.start(host, argv, request, env=hooks.env(), base=[])
    return qemu, console


def results(qemu, console, timeout=240):
    _, err = qemu.communicate(timeout=timeout)
    lines = [l.strip() for l in console.read_text(errors="replace").splitlines() if l.startswith("QIH-")]
    return lines, err


@pytest.mark.parametrize("net, expected", [
    ("192.0.2.10/24,192.0.2.1", "OK"),  # itself
    ("192.0.2.10/24,192.0.2.1,52:54:00:66:66:66", "FAIL"),  # it changes its MAC
    ("192.0.2.99/24,192.0.2.1", "FAIL"),  # an address it was not given
], ids=["allowed", "changed-mac", "other-address"])
def test_a_guest_reaches_the_lan_only_as_itself(lab, request, tmp_path, net, expected):
    host, _, hooks = lab
    write_config(hooks, "ip", ports=port("gtap0", "52:54:00:12:34:56", ["192.0.2.10"]))
    qemu, console = guest(host, hooks, request, tmp_path, "g1", "gtap0", "52:54:00:12:34:56", net)
    lines, err = results(qemu, console)
    assert lines == [f"QIH-PING eth0 {LAN} {expected}", "QIH-DONE"], (lines, err)


def test_a_dhcp_client_gets_a_lease_and_uses_it(lab, request, tmp_path):
    host, lan, hooks = lab
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(f"interface lan0\nstart 192.0.2.100\nend 192.0.2.110\nlease_file {tmp_path}/leases\n"
                    f"pidfile {tmp_path}/udhcpd.pid\noption subnet 255.255.255.0\n")
    (tmp_path / "leases").touch()
    server = lan.popen("busybox", "udhcpd", "-f", str(conf), stdout=open(os.devnull, "w"),
                       stderr=open(os.devnull, "w"))
    lan.holders.append(server)  # ended by PID with the namespace
    write_config(hooks, "ip", ports=port("gtap0", ipv4=["192.0.2.96/28"]))  # the MAC from QEMU
    qemu, console = guest(host, hooks, request, tmp_path, "g2", "gtap0", "52:54:00:12:34:57", f"dhcp,{LAN}")
    lines, err = results(qemu, console)
    assert len(lines) == 3 and lines[0].startswith("QIH-DHCP eth0 192.0.2.1"), (lines, err)
    assert lines[1:] == [f"QIH-PING eth0 {LAN} OK", "QIH-DONE"], (lines, err)


def test_a_killed_vms_tap_name_serves_the_next_vm_with_its_own_mac(lab, request, tmp_path):
    host, _, hooks = lab
    write_config(hooks, "mac", ports=port("gtap0"))  # no mac: each QEMU's own mac= counts
    first, _ = guest(host, hooks, request, tmp_path, "old", "gtap0", "52:54:00:00:00:01",
                     "192.0.2.21/24,192.0.2.250", wait=300)  # keeps pinging: still running
    assert qemutools.wait_for(lambda: host.master_of("gtap0") == "br0", 60)
    os.kill(first.pid, signal.SIGKILL)  # no downscript
    first.wait(timeout=30)
    second, console = guest(host, hooks, request, tmp_path, "new", "gtap0", "52:54:00:00:00:02",
                            "192.0.2.22/24,192.0.2.1")
    lines, err = results(second, console)
    assert lines == [f"QIH-PING eth0 {LAN} OK", "QIH-DONE"], (lines, err)
    rules = json.loads(host.run("nft", "-j", "list", "ruleset", check=True).stdout)["nftables"]
    sources = [e["match"]["right"] for r in rules if "rule" in r for e in r["rule"]["expr"]
               if "match" in e and e["match"]["left"] == {"payload": {"protocol": "ether", "field": "saddr"}}]
    assert "52:54:00:00:00:01" not in sources


@pytest.mark.parametrize("isolated", [True, False])
def test_isolated_guests_reach_the_lan_not_each_other(lab, request, tmp_path, isolated):
    """Not isolated (the control), the same two guests do reach each other."""
    host, _, hooks = lab
    write_config(hooks, "off", isolated=isolated)
    # Each keeps trying the other for 30 s: the two boots need not finish together.
    one, console_one = guest(host, hooks, request, tmp_path, "iso1", "itap1", "52:54:00:00:01:01",
                             f"192.0.2.31/24,{LAN}+192.0.2.32", wait=30)
    two, console_two = guest(host, hooks, request, tmp_path, "iso2", "itap2", "52:54:00:00:01:02",
                             f"192.0.2.32/24,{LAN}+192.0.2.31", wait=30)
    got = [results(one, console_one)[0], results(two, console_two)[0]]
    lan = [lines[0] for lines in got]
    each_other = [lines[1].rsplit(" ", 1)[1] for lines in got]
    assert lan == [f"QIH-PING eth0 {LAN} OK"] * 2, got
    if isolated:
        assert each_other == ["FAIL", "FAIL"], got
    else:
        # The guest that gets through first powers off, so the other may then find it
        # gone: one direction through is the control.
        assert "OK" in each_other, got
