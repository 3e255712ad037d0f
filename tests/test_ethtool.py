"""qemu_ifhooks.ethtool against `ethtool -k`, inside throwaway namespaces."""

from __future__ import annotations

import errno

import pytest

from conftest import Netns

pytestmark = pytest.mark.root


class EthtoolNetns(Netns):
    def read_offloads(self, *names: str, user: str | None = None,
                      how: str = "read_offloads") -> list:
        """What qemu_ifhooks.ethtool.read_offloads() (or one of its two readers,
        `how`) returns for each device."""
        return self.probe([{"op": how, "ifname": n} for n in names], user=user)

    def ethtool_k(self, dev: str) -> dict:
        """{"gro": bool, "lro": bool} as `ethtool -k` prints them."""
        features = self.offloads(dev)
        return {"gro": features["generic-receive-offload"] == "on",
                "lro": features["large-receive-offload"] == "on"}


@pytest.fixture
def ns(make_netns) -> EthtoolNetns:
    space = make_netns("qih-et", kind=EthtoolNetns)
    space.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    space.ip("link", "add", "br0", "type", "bridge")
    return space


READERS = ("read_offloads", "read_offloads_netlink", "read_offloads_ioctl")


@pytest.mark.parametrize("how", READERS)
def test_gro_toggle_matches_ethtool(ns, how):
    for state in ("on", "off", "on"):
        ns.run("ethtool", "-K", "va", "gro", state, check=True)
        (got,) = ns.read_offloads("va", how=how)
        assert got == ns.ethtool_k("va")
        assert got["gro"] is (state == "on")
        assert got["lro"] is False  # veth has no LRO ("off [fixed]")


@pytest.mark.parametrize("how", READERS)
def test_other_devices_match_ethtool(ns, how):
    names = ("lo", "va", "vb", "br0")
    for name, got in zip(names, ns.read_offloads(*names, how=how)):
        assert got == ns.ethtool_k(name), name


@pytest.mark.parametrize("how", READERS)
def test_reading_needs_no_privilege(ns, how):
    ns.run("ethtool", "-K", "vb", "gro", "on", check=True)
    assert ns.read_offloads("vb", user="nobody", how=how) == [{"gro": True, "lro": False}]


@pytest.mark.parametrize("how", READERS)
def test_missing_device(ns, how):
    (got,) = ns.read_offloads("missing0", how=how)
    assert got["error"] == "FileNotFoundError" and got["errno"] == errno.ENODEV


def test_invalid_name():
    from qemu_ifhooks.ethtool import read_offloads

    for name in ("", "x" * 16, "a\0b"):
        with pytest.raises(ValueError):
            read_offloads(name)


# --- the reply's ACTIVE bitset, parsed without the kernel -----------------------------

def bitset(bits, listed: bool) -> bytes:
    """An ETHTOOL_A_FEATURES_ACTIVE payload: (index, name, set) per bit; `listed`: the
    list form (NOMASK, only set bits named), else each bit with its VALUE flag."""
    import struct

    from qemu_ifhooks.nlsocket import _attr, _nested

    body = b"".join(
        _nested(1, _attr(1, struct.pack("=I", index)) + _attr(2, name.encode() + b"\0")
                + (_attr(3, b"") if on and not listed else b""))
        for index, name, on in bits if on or not listed)
    return (_attr(1, b"") if listed else b"") + _attr(2, struct.pack("=I", 64)) + \
        _nested(3, body)


@pytest.mark.parametrize("listed", [True, False], ids=["list-form", "mask-form"])
@pytest.mark.parametrize("gro,lro", [(True, False), (False, True), (False, False),
                                     (True, True)])
def test_active_bitset_forms(listed, gro, lro):
    """Names that merely start like rx-gro (rx-gro-hw, rx-gro-list) never count."""
    from qemu_ifhooks.ethtool import Offloads, _offloads

    bits = [(14, "rx-gro", gro), (15, "rx-lro", lro), (56, "rx-gro-hw", True),
            (57, "rx-gro-list", True), (0, "tx-scatter-gather", True)]
    assert _offloads(bitset(bits, listed)) == Offloads(gro=gro, lro=lro)
