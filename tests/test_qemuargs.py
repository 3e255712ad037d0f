"""`qemu-ifhooks qemu-args` and `qemu-ifhooks translate`: golden outputs, the helpers
they share, their errors, and QEMU 7.2 itself accepting what they print (its own
`info network` is the oracle)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, SEED_CONFIG, assert_one_line_error, require_qemu, sh
from qemutools import QEMU_BASE, info_network_and_quit, start, wait_for

from qemu_ifhooks.ifname import ifname_problem
from qemu_ifhooks.qemuargs import join_opts, vm_mac, vm_tap_name
from qemu_ifhooks.qemuopts import split_opts

GOLDEN = Path(__file__).resolve().parent / "golden"
SEED_ARGS = shlex.split((GOLDEN / "seed-legacy.args").read_text())
HUB_ARGS = ["-m", "64",
            "-net", "nic,model=e1000,vlan=2,macaddr=52:54:00:00:02:01",
            "-net", "nic,model=rtl8139,vlan=2,name=second",
            "-net", "tap,vlan=2,ifname=hubtap,script=no,downscript=no",
            "-net", "user,vlan=3,hostfwd=tcp:127.0.0.1:2222-:22",
            "-net", "nic,vlan=3,model=virtio,macaddr=52:54:00:00:03:01",
            "-net", "none"]


def cli(*args, config=None, **kwargs):
    argv = [str(CLI), *args] + (["--config", str(config)] if config else [])
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "qemu-ifhooks.toml"
    path.write_text(SEED_CONFIG)
    path.chmod(0o644)
    return path


# --- golden -----------------------------------------------------------------------------

def test_translate_seed_example_golden():
    done = cli("translate", "--", *SEED_ARGS)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (GOLDEN / "translate-seed.txt").read_text()


def test_translate_hub_golden():
    done = cli("translate", "--", *HUB_ARGS)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / "translate-hub.txt").read_text()
    assert done.stderr == ""


def test_qemu_args_golden(config):
    done = cli("qemu-args", "0", "1", "--vm", "web1", "--hook-dir", "/root", config=config)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (GOLDEN / "qemu-args-web1.txt").read_text()


def test_qemu_args_model_and_default_dir(config):
    done = cli("qemu-args", "1", "--vm", "db", "--model", "e1000", config=config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "-netdev tap,id=net1,ifname=db-1,script=/etc/qemu-ifhooks/ifup-br1,"
        "downscript=/etc/qemu-ifhooks/ifdown-br1",
        f"-device e1000,netdev=net1,mac={vm_mac('db', 1)}"]


def test_qemu_args_without_a_vm_name_warns(config):
    done = cli("qemu-args", "0", config=config)
    assert done.returncode == 0
    assert "ifname=" not in done.stdout and "mac=" not in done.stdout
    assert done.stderr.startswith("qemu-ifhooks: qemu-args: warning: without --vm")


# --- the shared helpers -------------------------------------------------------------------

def test_opts_round_trip_doubles_commas():
    text = "tap,id=n0,script=/a,,b/ifup,vhost"
    options = split_opts(text)
    assert options == [("tap", None), ("id", "n0"), ("script", "/a,b/ifup"), ("vhost", None)]
    assert join_opts(options) == text


@pytest.mark.parametrize("vm", ["web1", "db", "a-very-long-vm-name", "x" * 64, "with space",
                                "slash/name", "colon:name", "ünïcode-vm", ".", "-"])
@pytest.mark.parametrize("vlan", [0, 7, 4094])
def test_vm_mac_and_tap_name(vm, vlan):
    mac = vm_mac(vm, vlan)
    first = int(mac[:2], 16)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert vm_mac(vm, vlan) == mac  # stable
    assert vm_mac(vm, vlan + 1 if vlan < 4094 else 0) != mac
    tap = vm_tap_name(vm, vlan)
    assert ifname_problem(tap) is None and len(tap.encode()) <= 15
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", tap)
    assert tap.endswith(f"-{vlan}")


def test_tap_names_keep_distinct_vms_apart():
    names = {vm_tap_name(f"customer-database-{n}", 12) for n in range(200)}
    assert len(names) == 200
    assert vm_tap_name("web1", 0) == "web1-0"
    assert vm_mac("web1", 0) != vm_mac("web2", 0)


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["-net", "dump,vlan=0,file=/tmp/x.pcap"], "filter-dump"),
    (["-net", "frob,vlan=0"], "cannot translate backend type 'frob'"),
    (["-net", "nic,vlan=x"], "vlan: expected a number"),
    (["-net", "nic,vlan=0,netdev=n0"], "vlan and netdev exclude each other"),
    (["-net", "nic,vlan=0,bogus=1"], "cannot translate option 'bogus'"),
    (["-net", "nic,model=help"], "-device help"),
    (["-net", "tap,vlan=0,ifname=way-too-long-name0"], "interface names are 1..15 bytes"),
    (["-net", "tap,name=n0", "-net", "user,name=n0"], "QEMU id 'n0' is used twice"),
    (["-net", "nic,name=0bad"], "not a valid QEMU id"),
    (["-m", "512"], "no -net arguments"),
    (["-net"], "-net: missing its value"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_translate_errors(args, fragment):
    assert_one_line_error(cli("translate", "--", *args), 64, "translate", fragment)


def test_translate_without_double_dash_says_so():
    assert_one_line_error(cli("translate", "-net", "nic"), 64, "after '--'")


@pytest.mark.parametrize("args, fragment", [
    (["0", "0", "--vm", "x"], "VLAN 0 given twice"),
    (["9", "--vm", "x"], "no segment vlan.9"),
    (["0", "--model", "e1000,x=1"], "invalid NIC model"),
    (["0", "--vm", ""], "--vm: expected a VM name"),
    (["4095"], "0..4094"),
])
def test_qemu_args_errors(config, args, fragment):
    assert_one_line_error(cli("qemu-args", *args, config=config), 64, fragment)


def test_translate_passes_other_arguments_through_and_avoids_their_ids():
    done = cli("translate", "--", "-m", "512", "-netdev", "user,id=net0",
               "-device", "e1000,netdev=net0", "-net", "nic,vlan=0", "-net",
               "tap,vlan=0,script=no,downscript=no", "-hda", "disk.img")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "-m 512", "-netdev user,id=net0", "-device e1000,netdev=net0",
        "-netdev tap,id=net0.1,script=no,downscript=no", "-device e1000,netdev=net0.1",
        "-hda disk.img"]


# --- QEMU 7.2 accepts the output ------------------------------------------------------------

@pytest.fixture
def lab(make_netns, hooks):
    """A VM host namespace with uplinks eth0/eth1 and the hooks installed."""
    require_qemu()
    host = make_netns("qih-qa")
    host.veth("eth0", "lan0")
    host.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    return host


def bridge_ports(ns):
    import json

    out = sh("bridge", "-n", ns.name, "-j", "link").stdout
    return {p["ifname"]: p.get("master") for p in json.loads(out or "[]")}


def test_qemu_rejects_the_seed_as_is_and_accepts_the_translation(lab, hooks, request):
    raw = lab.run(*QEMU_BASE, *SEED_ARGS, input="quit\n", timeout=60)
    assert raw.returncode != 0 and "Invalid parameter 'vlan'" in raw.stderr

    legacy = [a.replace("/root/", f"{hooks.dir}/") for a in SEED_ARGS]
    done = cli("translate", "--", *legacy)
    assert done.returncode == 0, done.stderr
    qemu = start(lab, shlex.split(done.stdout), request, env=hooks.env())
    assert wait_for(lambda: sum(m in ("br0", "br1") for m in bridge_ports(lab).values()) == 4)
    ports = bridge_ports(lab)
    seen = info_network_and_quit(qemu)
    assert seen["returncode"] == 0, seen["stderr"]
    nics, netdevs = seen["nics"], seen["netdevs"]
    assert {n: (f["model"], f["macaddr"]) for n, f in nics.items()} == {
        "virtio-net-pci.0": ("virtio-net-pci", "00:16:3e:00:01:01"),
        "virtio-net-pci.1": ("virtio-net-pci", "00:16:3e:00:01:02")}
    assert sorted(netdevs) == ["net0", "net1"]
    for netdev, nic, bridge in (("net0", "virtio-net-pci.0", "br0"),
                                ("net1", "virtio-net-pci.1", "br1")):
        fields = netdevs[netdev]
        assert fields["type"] == "tap" and fields["peer"] == nic
        assert fields["script"] == f"{hooks.dir}/ifup-{bridge}"
        assert fields["downscript"] == f"{hooks.dir}/ifdown-{bridge}"
        assert ports[fields["ifname"]] == bridge  # the hook put the TAP on its bridge
    downs = [l for l in hooks.log_lines() if "action=ifdown" in l and "result=ok" in l]
    assert len(downs) == 2  # quit ran both downscripts


def test_qemu_accepts_a_translated_hub(make_netns, request):
    require_qemu()
    ns = make_netns("qih-hub")
    done = cli("translate", "--", *HUB_ARGS[2:])
    assert done.returncode == 0, done.stderr
    seen = info_network_and_quit(start(ns, shlex.split(done.stdout), request))
    assert seen["returncode"] == 0, seen["stderr"]
    assert sorted(seen["hubs"][2]) == ["e1000.0", "net2", "second"]
    assert seen["nics"]["e1000.0"]["macaddr"] == "52:54:00:00:02:01"
    assert seen["nics"]["second"]["model"] == "rtl8139"
    assert seen["netdevs"]["net2"]["ifname"] == "hubtap"
    assert seen["netdevs"]["net2"]["script"] == "no"
    assert seen["netdevs"]["net3"] == {"type": "user", "net": "10.0.2.0",
                                       "restrict": "off", "peer": "virtio-net-pci.0"}
    assert seen["nics"]["virtio-net-pci.0"]["macaddr"] == "52:54:00:00:03:01"


def test_qemu_accepts_qemu_args_output(lab, hooks, request):
    done = cli("qemu-args", "0", "1", "--vm", "web1", "--hook-dir", str(hooks.dir),
               config=hooks.config)
    assert done.returncode == 0, done.stderr
    qemu = start(lab, shlex.split(done.stdout), request, env=hooks.env())
    assert wait_for(lambda: {"web1-0", "web1-1"} <= set(bridge_ports(lab)))
    ports = bridge_ports(lab)
    assert (ports["web1-0"], ports["web1-1"]) == ("br0", "br1")
    seen = info_network_and_quit(qemu)
    assert seen["returncode"] == 0, seen["stderr"]
    assert {f["peer"]: (n, f["ifname"]) for n, f in seen["netdevs"].items()} == {
        "virtio-net-pci.0": ("net0", "web1-0"), "virtio-net-pci.1": ("net1", "web1-1")}
    assert [seen["nics"][f"virtio-net-pci.{v}"]["macaddr"] for v in (0, 1)] == \
        [vm_mac("web1", 0), vm_mac("web1", 1)]


def test_libvirt_xml_interfaces(tmp_path):
    """libvirt-xml: one <interface type='ethernet'> per VLAN on the installed entries,
    with the MAC and TAP name qemu-args derives from --vm."""
    import xml.etree.ElementTree as ET

    from qemu_ifhooks.libvirtxml import libvirt_xml
    from qemu_ifhooks.qemuargs import Nic, vm_mac

    text = libvirt_xml([Nic(0, "/h/ifup-br0", "/h/ifdown-br0"),
                        Nic(1, "/h/ifup-b'1", "/h/ifdown-b'1")], "web1")
    nics = ET.fromstring(f"<devices>{text}</devices>").findall("interface")
    assert [n.get("type") for n in nics] == ["ethernet", "ethernet"]
    assert [n.find("target").get("dev") for n in nics] == ["web1-0", "web1-1"]
    assert nics[0].find("mac").get("address") == vm_mac("web1", 0)
    assert nics[1].find("script").get("path") == "/h/ifup-b'1"
    assert nics[1].find("downscript").get("path") == "/h/ifdown-b'1"
    assert nics[0].find("model").get("type") == "virtio"
    unnamed = ET.fromstring(libvirt_xml([Nic(0, "/u", "/d")], None))
    assert unnamed.find("target") is None and unnamed.find("mac") is None
    assert ET.fromstring(libvirt_xml([Nic(0, "/u", "/d")], "vnet"))\
        .find("target").get("dev") == "tvnet-0"  # libvirt keeps vnet* names for itself
