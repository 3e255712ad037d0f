"""qemu_ifhooks.netlink against iproute2, bridge(8) and pyroute2, inside throwaway namespaces."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT, Netns, sh

pytestmark = pytest.mark.root

OPERSTATES = {"UNKNOWN": 0, "NOTPRESENT": 1, "DOWN": 2, "LOWERLAYERDOWN": 3, "TESTING": 4, "DORMANT": 5, "UP": 6}

# pyroute2 oracle, run inside the namespace; prints every link as JSON.
PYROUTE2_LINKS = r"""
import json
from pyroute2 import IPRoute
out = []
with IPRoute() as ipr:
    for l in ipr.get_links():
        data = l.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        tun = data.get("IFLA_TUN_TYPE") if data is not None and hasattr(data, "get") else None
        out.append({
            "index": l["index"], "name": l.get("IFLA_IFNAME"), "flags": l["flags"],
            "mtu": l.get("IFLA_MTU"), "master": l.get("IFLA_MASTER") or 0,
            "address": l.get("IFLA_ADDRESS"), "operstate": l.get("IFLA_OPERSTATE"),
            "kind": l.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            "tun_type": {1: "tun", 2: "tap"}.get(tun),
        })
print(json.dumps(out))
"""


class NlNetns(Netns):
    """Netns plus the oracles these tests need beyond conftest's."""

    def index(self, name: str) -> int:
        return self.link(name)["ifindex"]

    def addresses(self) -> list:
        return json.loads(self.ip("-j", "addr", "show").stdout or "[]")

    def python(self, code: str) -> str:
        return self.run(sys.executable, "-c", code, check=True, cwd="/").stdout

    def pyroute2_links(self) -> dict:
        return {link["name"]: link for link in json.loads(self.python(PYROUTE2_LINKS))}


@pytest.fixture
def ns(make_netns) -> NlNetns:
    return make_netns("qih-nl", kind=NlNetns)


def assert_same_as_oracles(ns: NlNetns, got: dict) -> None:
    ip = ns.link(got["name"])
    assert got["index"] == ip["ifindex"]
    assert got["mtu"] == ip["mtu"]
    assert got["is_up"] == ("UP" in ip["flags"])
    assert got["operstate"] == OPERSTATES[ip["operstate"]]
    if ip["link_type"] == "none":  # TUN: no link-layer address
        assert got["address"] is None
    else:
        assert got["address"] == ip["address"]
    assert got["kind"] == ip.get("linkinfo", {}).get("info_kind")
    if got["kind"] == "tun":
        assert got["tun_type"] == ip["linkinfo"]["info_data"]["type"]
    else:
        assert got["tun_type"] is None
    master = ip.get("master")
    assert got["master"] == (ns.index(master) if master else 0)

    pr = ns.pyroute2_links()[got["name"]]
    for key in ("index", "flags", "mtu", "master", "address", "kind", "tun_type"):
        assert got[key] == pr[key], key
    assert got["operstate"] == OPERSTATES[pr["operstate"]]


def test_get_link_lo_veth_bridge(ns):
    ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ns.ip("link", "add", "br0", "type", "bridge")
    ns.ip("link", "set", "va", "master", "br0", "mtu", "1400")
    ns.ip("link", "set", "vb", "up")
    ns.ip("link", "set", "lo", "up")
    names = ["lo", "va", "vb", "br0"]
    got = ns.probe([{"op": "get_link", "name": n} for n in names] + [{"op": "get_link", "name": "missing0"}])
    for name, link in zip(names, got):
        assert link["name"] == name
        assert_same_as_oracles(ns, link)
    assert got[-1] is None
    lo, va, vb, br0 = got[:4]
    assert lo["kind"] is None and lo["is_up"]
    assert va["kind"] == "veth" and va["master"] == br0["index"] and not va["is_tap"]
    assert br0["kind"] == "bridge" and not br0["is_up"]

    by_index = ns.probe([{"op": "get_link_by_index", "index": link["index"]} for link in got[:4]])
    assert by_index == got[:4]
    assert ns.probe([{"op": "get_link_by_index", "index": 999999}]) == [None]


def test_tap_and_tun(ns):
    ns.hold_taps("tap0")
    ns.hold_taps("tun0", tun=True)
    tap, tun = ns.probe([{"op": "get_link", "name": "tap0"}, {"op": "get_link", "name": "tun0"}])
    assert (tap["kind"], tap["tun_type"], tap["is_tap"]) == ("tun", "tap", True)
    assert (tun["kind"], tun["tun_type"], tun["is_tap"]) == ("tun", "tun", False)
    assert len(bytes.fromhex(tap["address"].replace(":", ""))) == 6
    assert tun["address"] is None  # IFF_TUN has no link-layer address
    assert_same_as_oracles(ns, tap)
    assert_same_as_oracles(ns, tun)


def test_alias_set_read_and_cleared(ns):
    """IFLA_IFALIAS: what the codec writes, iproute2 and pyroute2 read, and back."""
    ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ns.ip("link", "set", "vb", "alias", "set by ip: vb")
    va = ns.index("va")
    got = ns.probe([
        {"op": "get_link", "name": "va"},
        {"op": "set_link", "index": va, "alias": "qemu-ifhooks: vlan.1"},
        {"op": "get_link", "name": "va"},
        {"op": "get_link", "name": "vb"},
        {"op": "set_link", "index": va, "alias": "x" * 256},
        {"op": "set_link", "index": va, "alias": "a\0b"},
    ])
    assert got[0]["alias"] is None and got[1] is None
    assert got[2]["alias"] == "qemu-ifhooks: vlan.1" == ns.link("va")["ifalias"]
    assert ns.python("from pyroute2 import IPRoute\nwith IPRoute() as i:\n"
                     " print(i.get_links(ifname='va')[0].get_attr('IFLA_IFALIAS'))") == \
        "qemu-ifhooks: vlan.1\n"
    assert got[3]["alias"] == "set by ip: vb"
    assert got[4]["error"] == got[5]["error"] == "ValueError"  # refused before the kernel
    assert ns.probe([{"op": "set_link", "index": va, "alias": ""},
                     {"op": "get_link", "name": "va"}]) == [None, {**got[2], "alias": None}]
    assert "ifalias" not in ns.link("va")


def _linkinfo_msg(ifi_type: int, info: bytes) -> bytes:
    from qemu_ifhooks import netlink as m
    from qemu_ifhooks.nlsocket import _nested

    name = m._attr(m._IFLA_IFNAME, b"t0\0")
    return m._IFINFOMSG.pack(0, ifi_type, 7, 0, 0) + name + _nested(m._IFLA_LINKINFO, info)


def test_tun_type_falls_back_to_arphrd():
    """Kernels without tun fill_info (IFLA_INFO_DATA) still tell TAP from TUN."""
    from qemu_ifhooks import netlink as m
    from qemu_ifhooks.nlsocket import _nested

    kind = m._attr(m._IFLA_INFO_KIND, b"tun\0")
    tap = m._parse_link(_linkinfo_msg(1, kind))  # ARPHRD_ETHER
    tun = m._parse_link(_linkinfo_msg(0xFFFE, kind))  # ARPHRD_NONE
    assert (tap.tun_type, tap.is_tap, tap.name, tap.index) == ("tap", True, "t0", 7)
    assert (tun.tun_type, tun.is_tap) == ("tun", False)
    # IFLA_TUN_TYPE wins over ifi_type; unknown attributes are skipped.
    data = _nested(m._IFLA_INFO_DATA, m._attr(99, b"xyz"), m._attr(m._IFLA_TUN_TYPE, b"\x01"))
    assert m._parse_link(_linkinfo_msg(1, kind + data)).tun_type == "tun"


def test_create_bridge(ns):
    got = ns.probe([
        {"op": "create_bridge", "name": "br0", "address": "02:11:22:33:44:55", "stp": True, "forward_delay": 4},
        {"op": "create_bridge", "name": "br1"},
        {"op": "create_bridge", "name": "br2", "stp": True},
        {"op": "create_bridge", "name": "br0"},
    ])
    assert got[:3] == [None, None, None]
    assert got[3]["error"] == "FileExistsError" and got[3]["errno"] == errno.EEXIST

    br0, br1, br2 = (ns.link(n) for n in ("br0", "br1", "br2"))
    assert br0["address"] == "02:11:22:33:44:55"
    assert br0["linkinfo"]["info_kind"] == "bridge"
    # iproute2 prints the kernel's clock_t value (1/100 s)
    assert br0["linkinfo"]["info_data"]["forward_delay"] == 400
    assert br0["linkinfo"]["info_data"]["stp_state"] == 1
    assert br1["linkinfo"]["info_data"]["forward_delay"] == 0
    assert br1["linkinfo"]["info_data"]["stp_state"] == 0
    # Starting kernel STP clamps the delay into 2..30 s.
    assert br2["linkinfo"]["info_data"]["forward_delay"] == 200
    assert br2["linkinfo"]["info_data"]["stp_state"] == 1
    for br in (br0, br1, br2):
        assert "UP" not in br["flags"]
    assert_same_as_oracles(ns, ns.probe([{"op": "get_link", "name": "br0"}])[0])

    # A given address sticks; without one the bridge takes its lowest port's.
    for i, br in enumerate(("br0", "br1")):
        ns.ip("link", "add", f"p{i}", "address", "00:00:00:00:00:01", "type", "veth", "peer", "name", f"q{i}")
        ns.ip("link", "set", f"p{i}", "master", br)
    assert ns.link("br0")["address"] == "02:11:22:33:44:55"
    assert ns.link("br1")["address"] == "00:00:00:00:00:01"


def test_set_link(ns):
    ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ns.ip("link", "add", "br0", "type", "bridge")
    va, br0 = ns.index("va"), ns.index("br0")

    assert ns.probe([{"op": "set_link", "index": va, "master": br0, "up": True}]) == [None]
    assert [ns.index(port) for port in ns.ports("br0")] == [va]
    assert "UP" in ns.link("va")["flags"]

    assert ns.probe([{"op": "set_link", "index": va, "mtu": 1280, "address": "02:00:00:00:00:07"}]) == [None]
    link = ns.link("va")
    assert (link["mtu"], link["address"], link["master"]) == (1280, "02:00:00:00:00:07", "br0")
    assert "UP" in link["flags"]  # fields not given are left alone

    assert ns.probe([{"op": "set_link", "index": va, "up": False}, {"op": "set_link", "index": br0, "up": True}]) == [None, None]
    assert "UP" not in ns.link("va")["flags"]
    assert "UP" in ns.link("br0")["flags"]

    assert ns.probe([{"op": "set_link", "index": va, "master": 0}]) == [None]
    assert ns.ports("br0") == []
    assert "master" not in ns.link("va")

    got = ns.probe([
        {"op": "set_link", "index": va, "mtu": 10},  # below the device minimum (68)
        {"op": "set_link", "index": 999999, "up": True},
    ])
    assert got[0]["error"] == "OSError" and got[0]["errno"] == errno.EINVAL
    assert got[1]["errno"] == errno.ENODEV


def test_list_links(ns):
    ns.ip("link", "add", "br0", "type", "bridge")
    ns.ip("link", "add", "br1", "type", "bridge")
    for i in range(4):
        ns.ip("link", "add", f"p{i}", "type", "veth", "peer", "name", f"q{i}")
        ns.ip("link", "set", f"p{i}", "master", "br0" if i % 2 else "br1")
    br0, br1 = ns.index("br0"), ns.index("br1")
    all_links, of_br0, of_br1, of_none, of_missing = ns.probe([
        {"op": "list_links"},
        {"op": "list_links", "master": br0},
        {"op": "list_links", "master": br1},
        {"op": "list_links", "master": 0},
        {"op": "list_links", "master": 999999},
    ])

    ip_links = ns.links()
    assert [link["index"] for link in all_links] == [link["ifindex"] for link in ip_links]
    for master, got in (("br0", of_br0), ("br1", of_br1)):
        expect = sorted(ns.index(port) for port in ns.ports(master))
        assert sorted(link["index"] for link in got) == expect and len(expect) == 2
    assert sorted(link["name"] for link in of_none) == sorted(link["ifname"] for link in ip_links if "master" not in link)
    assert of_missing == []
    pr = ns.pyroute2_links()
    for link in all_links:
        assert link["flags"] == pr[link["name"]]["flags"]
        assert link["master"] == pr[link["name"]]["master"]


def test_list_links_multipart(ns):
    """Enough links that the dump spans many datagrams."""
    batch = "".join(f"link add m{i} type veth peer name n{i}\n" for i in range(150))
    sh("ip", "-n", ns.name, "-batch", "-", input=batch)
    (got,) = ns.probe([{"op": "list_links"}])
    assert len(got) == 301
    assert [link["name"] for link in got] == [link["ifname"] for link in ns.links()]


def test_reply_larger_than_buffer(ns):
    """A datagram bigger than the receive buffer is peeked and read whole."""
    code = (
        "from qemu_ifhooks.linkbuild import list_links\n"
        "from qemu_ifhooks.netlink import Netlink\n"
        "with Netlink() as nl:\n"
        "    nl._buf = bytearray(16)\n"
        "    print(nl.get_link('lo').name, len(list_links(nl)), len(nl._buf) > 16)\n"
    )
    assert ns.python(code).split() == ["lo", "1", "True"]


def test_delete_link(ns):
    ns.ip("link", "add", "br0", "type", "bridge")
    ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    br0, va = ns.index("br0"), ns.index("va")
    got = ns.probe([
        {"op": "delete_link", "index": br0},
        {"op": "get_link", "name": "br0"},
        {"op": "delete_link", "index": br0},
        {"op": "delete_link", "index": va},
        {"op": "get_link", "name": "vb"},  # a veth takes its peer along
    ])
    assert got[:2] == [None, None]
    assert got[2]["errno"] == errno.ENODEV
    assert got[3:] == [None, None]
    assert [link["ifname"] for link in ns.links()] == ["lo"]


def test_global_addresses(ns):
    ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ns.ip("link", "set", "lo", "up")
    for addr in ("192.0.2.5/24", "127.0.0.2/8", "2001:db8::5/64", "fe80::5/64"):
        ns.ip("addr", "add", addr, "dev", "va", *(["nodad"] if ":" in addr else []))
    ns.ip("addr", "add", "10.1.2.3/16", "dev", "va", "scope", "link")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "vb")
    ns.ip("addr", "add", "10.9.9.1", "peer", "10.9.9.2/32", "dev", "vb")
    va, vb = ns.index("va"), ns.index("vb")
    got_va, got_vb, got_lo, got_missing = ns.probe([
        {"op": "global_addresses", "index": i} for i in (va, vb, 1, 999999)
    ])
    assert sorted(got_va) == ["192.0.2.5/24", "2001:db8::5/64"]
    assert sorted(got_vb) == ["10.9.9.1/32", "198.51.100.7/24"]  # the local end, not the peer
    assert got_lo == [] and got_missing == []

    for index, got in ((va, got_va), (vb, got_vb)):
        (info,) = [i for i in ns.addresses() if i["ifindex"] == index]
        expect = [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["scope"] == "global"]
        assert sorted(got) == sorted(expect)


def test_permission_error_as_nobody(ns):
    ns.ip("link", "add", "br0", "type", "bridge")
    br0 = ns.index("br0")
    got = ns.probe([
        {"op": "get_link", "name": "br0"},
        {"op": "create_bridge", "name": "br1"},
        {"op": "set_link", "index": br0, "up": True},
        {"op": "delete_link", "index": br0},
    ], user="nobody")
    assert got[0]["index"] == br0  # reading needs no privilege
    for result in got[1:]:
        assert result["error"] == "PermissionError" and result["errno"] == errno.EPERM
    assert "UP" not in ns.link("br0")["flags"]


def test_error_carries_extack(ns):
    ns.ip("link", "add", "br0", "type", "bridge")
    ns.ip("link", "add", "br1", "type", "bridge")
    (got,) = ns.probe([{"op": "set_link", "index": ns.index("br0"), "master": ns.index("br1")}])
    assert got["errno"] == errno.ELOOP
    assert "bridge" in got["extack"]  # the kernel's own explanation, kept on the exception


def test_invalid_names_are_refused_locally():
    from qemu_ifhooks.netlink import Netlink

    with Netlink() as nl:
        for name in ("", "x" * 16, "a\0b"):
            with pytest.raises(ValueError):
                nl.get_link(name)


def test_imports_only_stdlib():
    """The hot-path modules must not pull in pyroute2 or anything outside the stdlib."""
    code = (
        "import sys, json; before = set(sys.modules); "
        "import qemu_ifhooks.netlink, qemu_ifhooks.ethtool; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    timed = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "qemu_ifhooks.netlink" in timed and "qemu_ifhooks.ethtool" in timed
    assert not [name for name in timed if name.split(".")[0] == "pyroute2"]

    loaded = json.loads(proc.stdout)
    foreign = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names | {"qemu_ifhooks"}]
    assert not foreign
    assert "ctypes" not in loaded


def test_genl_family_matches_iproute2_and_pyroute2(ns):
    """The generic-netlink family lookup ethtool.py relies on: same id as `genl ctrl
    get` and pyroute2's resolver; an unknown family is None, not an error."""
    got = json.loads(ns.python(
        "import json; from qemu_ifhooks.netlink import NETLINK_GENERIC, Netlink\n"
        "with Netlink(NETLINK_GENERIC) as nl:\n"
        "    print(json.dumps([nl.genl_family(n) for n in ('ethtool', 'nl80211x-none')]))"))
    text = ns.run("genl", "ctrl", "get", "name", "ethtool", check=True).stdout
    oracle = int(re.search(r"ID: (0x[0-9a-f]+)", text).group(1), 16)
    pr = int(ns.python(
        "from pyroute2.netlink.generic import GenericNetlinkSocket, ctrlmsg\n"
        "s = GenericNetlinkSocket(); s.bind('ethtool', ctrlmsg); print(s.prid); s.close()"))
    assert got == [oracle, None] and pr == oracle
