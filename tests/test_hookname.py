"""Hook names (the basename QEMU runs the hook by) and the segment they select."""

from __future__ import annotations

import pytest

from qemu_ifhooks.config import parse_config
from qemu_ifhooks.errors import ExitStatus, UsageError
from qemu_ifhooks.hookname import IFDOWN, IFUP, HookName, parse_hook_name, resolve_segment


# --- parse_hook_name ---------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("ifup-br0", HookName(IFUP, bridge="br0")),
    ("ifdown-br0", HookName(IFDOWN, bridge="br0")),
    ("ifup-vlan0", HookName(IFUP, vlan=0)),
    ("ifdown-vlan0", HookName(IFDOWN, vlan=0)),
    ("ifup-vlan7", HookName(IFUP, vlan=7)),
    ("ifdown-vlan4094", HookName(IFDOWN, vlan=4094)),
    # not VLAN numbers: the rest is a bridge name
    ("ifup-vlan4095", HookName(IFUP, bridge="vlan4095")),
    ("ifup-vlan01", HookName(IFUP, bridge="vlan01")),
    ("ifup-vlan", HookName(IFUP, bridge="vlan")),
    ("ifup-vlan-1", HookName(IFUP, bridge="vlan-1")),
    ("ifdown-vlanx", HookName(IFDOWN, bridge="vlanx")),
    ("ifup-vlan\uff17", HookName(IFUP, bridge="vlan\uff17")),  # fullwidth digit 7
    ("ifup-br-lan", HookName(IFUP, bridge="br-lan")),
    ("ifdown-up", HookName(IFDOWN, bridge="up")),
    ("ifup-down", HookName(IFUP, bridge="down")),
    # generic names
    ("qemu-ifup", HookName(IFUP)),
    ("qemu-ifdown", HookName(IFDOWN)),
    ("ifup-", HookName(IFUP)),
    ("ifdown-", HookName(IFDOWN)),
    ("ifup", HookName(IFUP)),
    ("my-vm-down", HookName(IFDOWN)),
])
def test_parse_hook_name(name, expected):
    assert parse_hook_name(name) == expected


def test_generic_property():
    assert parse_hook_name("qemu-ifup").generic
    assert not parse_hook_name("ifup-br0").generic
    assert not parse_hook_name("ifup-vlan0").generic


@pytest.mark.parametrize("name", ["qemu-ifhook", "qemu-hook", "hook", "ifconfig-br0", ""])
def test_parse_hook_name_neither_up_nor_down(name):
    with pytest.raises(UsageError) as raised:
        parse_hook_name(name)
    assert raised.value.status == ExitStatus.USAGE == 64
    assert "ifup" in str(raised.value) and "ifdown" in str(raised.value)


# --- resolve_segment ---------------------------------------------------------------------

CONFIG = parse_config({
    "defaults": {"vlan": 2},
    "vlan": {
        # file order differs from numeric order on purpose
        "10": {"bridge": "brweb", "match": ["web-*"]},
        "2": {"bridge": "br2"},
        "5": {"bridge": "brweb2", "match": ["web-1*", "db?"]},
        "0": {"bridge": "shared"},
        "1": {"bridge": "shared"},
        "3": {"bridge": "vlan7"},
    },
}, "test.toml")

NO_DEFAULT = parse_config({
    "vlan": {
        "0": {"bridge": "br0", "match": ["a-*"]},
        "1": {"bridge": "br1"},
    },
}, "nodefault.toml")

NO_MATCH = parse_config({"vlan": {"0": {"bridge": "br0"}}}, "plain.toml")


def vlan_of(config, name, tap="tap0"):
    return resolve_segment(config, parse_hook_name(name), tap).vlan


def test_by_vlan():
    assert vlan_of(CONFIG, "ifup-vlan10") == 10
    assert vlan_of(CONFIG, "ifdown-vlan0") == 0
    # always valid, even when the segment's bridge is shared
    assert vlan_of(CONFIG, "ifup-vlan1") == 1


def test_by_vlan_undefined():
    with pytest.raises(UsageError) as raised:
        vlan_of(CONFIG, "ifup-vlan9")
    assert raised.value.status == 64
    assert "vlan.9" in str(raised.value)
    assert "test.toml" in str(raised.value)


def test_by_vlan_beats_a_bridge_named_like_it():
    """ifup-vlan7 is segment vlan.7, never the bridge literally named vlan7."""
    with pytest.raises(UsageError) as raised:
        vlan_of(CONFIG, "ifup-vlan7")
    assert raised.value.status == 64


def test_by_unique_bridge():
    assert vlan_of(CONFIG, "ifup-br2") == 2
    assert vlan_of(CONFIG, "ifdown-brweb") == 10
    segment = resolve_segment(CONFIG, parse_hook_name("ifup-brweb2"), "anything")
    assert (segment.vlan, segment.bridge) == (5, "brweb2")


def test_by_unknown_bridge():
    with pytest.raises(UsageError) as raised:
        vlan_of(CONFIG, "ifup-br99")
    assert raised.value.status == 64
    assert "br99" in str(raised.value)


@pytest.mark.parametrize("action", [IFUP, IFDOWN])
def test_by_shared_bridge(action):
    with pytest.raises(UsageError) as raised:
        vlan_of(CONFIG, f"{action}-shared")
    message = str(raised.value)
    assert raised.value.status == 64
    assert "vlan.0" in message and "vlan.1" in message
    assert f"{action}-vlan" in message


@pytest.mark.parametrize("tap, vlan", [
    ("web-1", 10),       # both vlan.10 (web-*) and vlan.5 (web-1*) fit: first in file order
    ("web-10", 10),
    ("web-", 10),
    ("db1", 5),
    ("dbx", 5),
    ("db12", 2),         # no glob fits: [defaults] vlan
    ("WEB-1", 2),        # globs are case-sensitive, like interface names
    ("tap0", 2),
])
@pytest.mark.parametrize("name", ["qemu-ifup", "qemu-ifdown"])
def test_generic(name, tap, vlan):
    assert vlan_of(CONFIG, name, tap) == vlan


def test_generic_without_default():
    assert vlan_of(NO_DEFAULT, "qemu-ifup", "a-1") == 0
    with pytest.raises(UsageError) as raised:
        vlan_of(NO_DEFAULT, "qemu-ifup", "b-1")
    assert raised.value.status == 64
    assert "b-1" in str(raised.value)
    assert "nodefault.toml" in str(raised.value)


def test_generic_no_globs_no_default():
    with pytest.raises(UsageError) as raised:
        vlan_of(NO_MATCH, "qemu-ifdown", "tap0")
    assert raised.value.status == 64


def test_explicit_hook_name_values():
    """The CLI's `hook ifup --vlan N` / `--bridge BR` build these directly."""
    assert resolve_segment(CONFIG, HookName(IFUP, vlan=3), "t").bridge == "vlan7"
    assert resolve_segment(CONFIG, HookName(IFUP, bridge="vlan7"), "t").vlan == 3
