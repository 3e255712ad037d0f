"""qemu_ifhooks.ethtool against `ethtool -k`, inside throwaway namespaces."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parent / "nl_probe.py"
STRICT = os.environ.get("QEMU_IFHOOKS_STRICT") == "1"

pytestmark = pytest.mark.root


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason} (QEMU_IFHOOKS_STRICT=1)")
    pytest.skip(reason)


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *argv: str, user: str | None = None) -> str:
        prefix = ["ip", "netns", "exec", self.name]
        if user:
            prefix += ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
        return subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, cwd="/").stdout

    def offloads(self, *names: str, user: str | None = None) -> list:
        ops = [{"op": "read_offloads", "ifname": n} for n in names]
        return json.loads(self.run(sys.executable, str(PROBE), json.dumps(ops), user=user))

    def ethtool_k(self, dev: str) -> dict:
        """{"gro": bool, "lro": bool} as `ethtool -k` prints them."""
        features = {}
        for line in self.run("ethtool", "-k", dev).splitlines():
            key, sep, value = line.partition(":")
            if sep and value.split():
                features[key.strip()] = value.split()[0] == "on"
        return {"gro": features["generic-receive-offload"], "lro": features["large-receive-offload"]}


@pytest.fixture
def ns(request) -> Namespace:
    if os.geteuid() != 0:
        _unavailable("needs root to create network namespaces")
    for tool in ("ip", "ethtool", "setpriv"):
        if not shutil.which(tool):
            _unavailable(f"{tool} not found")
    name = f"qihnl-{secrets.token_hex(4)}"
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if proc.returncode:
        _unavailable(f"cannot create a network namespace: {proc.stderr.strip()}")
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "del", name], capture_output=True))
    space = Namespace(name)
    space.run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
    space.run("ip", "link", "add", "br0", "type", "bridge")
    return space


def test_gro_toggle_matches_ethtool(ns):
    for state in ("on", "off", "on"):
        ns.run("ethtool", "-K", "va", "gro", state)
        (got,) = ns.offloads("va")
        assert got == ns.ethtool_k("va")
        assert got["gro"] is (state == "on")
        assert got["lro"] is False  # veth has no LRO ("off [fixed]")


def test_other_devices_match_ethtool(ns):
    names = ("lo", "va", "vb", "br0")
    for name, got in zip(names, ns.offloads(*names)):
        assert got == ns.ethtool_k(name), name


def test_reading_needs_no_privilege(ns):
    ns.run("ethtool", "-K", "vb", "gro", "on")
    assert ns.offloads("vb", user="nobody") == [{"gro": True, "lro": False}]


def test_missing_device(ns):
    (got,) = ns.offloads("missing0")
    assert got["error"] == "FileNotFoundError" and got["errno"] == errno.ENODEV


def test_invalid_name():
    from qemu_ifhooks.ethtool import read_offloads

    for name in ("", "x" * 16, "a\0b"):
        with pytest.raises(ValueError):
            read_offloads(name)
