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
