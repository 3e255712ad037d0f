"""The pure planner: segments and observed links in, operations out."""

from __future__ import annotations

import dataclasses

import pytest

from qemu_ifhooks.config import Segment
from qemu_ifhooks.errors import ConfigError, NotATapError, UnavailableError
from qemu_ifhooks.netlink import IFF_LOWER_UP, IFF_RUNNING, IFF_UP, Link
from qemu_ifhooks.plan import (CreateBridge, DeleteLink, Plan, SetDown, SetMaster, SetMtu,
                               SetNoMaster, SetUp, check_offloads, derived_bridge_mac,
                               offload_problem, plan_attach, plan_bridge, plan_detach,
                               plan_teardown, require_supported, require_tap)

UP = IFF_UP | IFF_RUNNING | IFF_LOWER_UP
DOWN = 0
ETH0_MAC = bytes.fromhex("525400aabbcc")
MID = b"0123456789abcdef0123456789abcdef"


def link(index, name, kind=None, tun_type=None, flags=UP, mtu=1500, master=0,
         address=b"\x52\x54\x00\x00\x00\x01", operstate=6) -> Link:
    return Link(index=index, name=name, kind=kind, tun_type=tun_type, flags=flags, mtu=mtu,
                master=master, address=address, operstate=operstate)


def eth0(**kw) -> Link:
    return link(2, "eth0", **{"address": ETH0_MAC, **kw})


def br0(**kw) -> Link:
    return link(10, "br0", kind="bridge", **kw)


def tap(name="tap0", index=20, **kw) -> Link:
    return link(index, name, kind="tun", tun_type="tap", **kw)


def seg(**kw) -> Segment:
    return Segment(**{"vlan": 0, "bridge": "br0", "uplink": "eth0", **kw})


def commands(plan: Plan):
    return [op.command() for op in plan.ops]


# --- plan_bridge -------------------------------------------------------------------------

def test_create_bridge_with_uplink_mac():
    plan = plan_bridge(seg(), None, eth0(), machine_id=MID)
    assert list(plan.ops) == [
        CreateBridge("br0", ETH0_MAC, False, 0),
        SetMaster("eth0", "br0"),
        SetUp("br0"),
    ]
    assert commands(plan) == [
        "ip link add br0 address 52:54:00:aa:bb:cc type bridge stp_state 0 forward_delay 0",
        "ip link set dev eth0 master br0",
        "ip link set dev br0 up",
    ]


def test_create_bridge_with_stp_and_mtu():
    segment = seg(stp=True, forward_delay=15, mtu=9000)
    plan = plan_bridge(segment, None, eth0(flags=DOWN), machine_id=MID)
    assert list(plan.ops) == [
        CreateBridge("br0", ETH0_MAC, True, 15),
        SetMtu("br0", 9000),  # after creation: an explicit MTU pins it
        SetMaster("eth0", "br0"),
        SetUp("eth0"),
        SetUp("br0"),
    ]
    assert plan.ops[0].command() == ("ip link add br0 address 52:54:00:aa:bb:cc type bridge "
                                     "stp_state 1 forward_delay 1500")  # centiseconds
    assert plan.ops[1].command() == "ip link set dev br0 mtu 9000"


def test_create_bridge_without_uplink_derives_a_mac():
    plan = plan_bridge(seg(uplink=None), None, None, machine_id=MID)
    assert [type(op) for op in plan.ops] == [CreateBridge, SetUp]
    create = plan.ops[0]
    assert create.address == derived_bridge_mac("br0", MID)
    assert plan.ops[1] == SetUp("br0")


def test_create_bridge_uplink_without_address_derives_a_mac():
    plan = plan_bridge(seg(), None, eth0(address=None), machine_id=MID)
    assert plan.ops[0].address == derived_bridge_mac("br0", MID)


def is_local_unicast(mac: bytes) -> bool:
    return len(mac) == 6 and mac[0] & 0x02 == 0x02 and mac[0] & 0x01 == 0


@pytest.mark.parametrize("name", ["br0", "br1", "x", "abcdefghijklmno", "vlan7"])
@pytest.mark.parametrize("machine_id", [b"", MID, b"f" * 32])
def test_derived_mac_is_locally_administered_unicast(name, machine_id):
    mac = derived_bridge_mac(name, machine_id)
    assert is_local_unicast(mac), mac.hex()
    assert mac != bytes(6)


def test_derived_mac_is_stable_and_distinct():
    assert derived_bridge_mac("br0", MID) == derived_bridge_mac("br0", MID)
    assert plan_bridge(seg(uplink=None), None, None, machine_id=MID).ops[0].address == \
        plan_bridge(seg(uplink=None), None, None, machine_id=MID).ops[0].address
    names = {derived_bridge_mac(f"br{i}", MID) for i in range(200)}
    assert len(names) == 200
    assert derived_bridge_mac("br0", MID) != derived_bridge_mac("br0", b"f" * 32)
    assert derived_bridge_mac("br0", MID) != derived_bridge_mac("br0", b"")
    # name and machine-id are not simply concatenated
    assert derived_bridge_mac("0br", b"x") != derived_bridge_mac("br", b"x0")


def test_create_false_refuses():
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(seg(create=False), None, eth0(), machine_id=MID)
    assert raised.value.status == 69
    assert "br0" in str(raised.value)
    assert "qemu-ifhooks up 0" in str(raised.value)


def test_create_false_with_existing_bridge_is_fine():
    assert plan_bridge(seg(create=False), br0(), eth0(master=10)) == Plan()


@pytest.mark.parametrize("impostor", [
    link(10, "br0", kind="veth"),
    link(10, "br0", kind="tun", tun_type="tap"),
    link(10, "br0", kind=None),
])
def test_existing_non_bridge_refuses(impostor):
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(seg(), impostor, eth0())
    assert raised.value.status == 69
    assert "not a bridge" in str(raised.value)


@pytest.mark.parametrize("bridge", [None, br0()])
def test_uplink_missing_refuses(bridge):
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(seg(), bridge, None)
    assert raised.value.status == 69
    assert "eth0" in str(raised.value)


@pytest.mark.parametrize("bridge", [None, br0()])
def test_uplink_in_another_master_refuses(bridge):
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(seg(), bridge, eth0(master=99))
    assert raised.value.status == 69
    assert "eth0" in str(raised.value)


@pytest.mark.parametrize("bridge", [None, br0()])
def test_addressed_uplink_refuses(bridge):
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(seg(), bridge, eth0(), ["192.0.2.10/24", "2001:db8::1/64"])
    message = str(raised.value)
    assert raised.value.status == 69
    assert "192.0.2.10/24" in message
    assert "allow_addressed_uplink = true" in message


def test_addressed_uplink_allowed():
    plan = plan_bridge(seg(allow_addressed_uplink=True), br0(), eth0(), ["192.0.2.10/24"])
    assert list(plan.ops) == [SetMaster("eth0", "br0")]


def test_existing_bridge_fully_set_up():
    assert plan_bridge(seg(), br0(), eth0(master=10)) == Plan()
    assert plan_bridge(seg(uplink=None), br0(), None) == Plan()
    assert plan_bridge(seg(mtu=9000, stp=True, forward_delay=2), br0(mtu=9000),
                       eth0(master=10)).ops == ()


def test_existing_bridge_needs_uplink_and_up():
    plan = plan_bridge(seg(), br0(flags=DOWN), eth0(flags=DOWN))
    assert list(plan.ops) == [SetMaster("eth0", "br0"), SetUp("eth0"), SetUp("br0")]


def test_existing_bridge_down_only():
    assert list(plan_bridge(seg(), br0(flags=DOWN), eth0(master=10)).ops) == [SetUp("br0")]


# --- plan_attach -------------------------------------------------------------------------

def test_attach_sets_mtu_before_master():
    plan = plan_attach(seg(), tap(flags=DOWN), br0(mtu=9000))
    assert list(plan.ops) == [SetMtu("tap0", 9000), SetMaster("tap0", "br0"), SetUp("tap0")]
    assert commands(plan) == ["ip link set dev tap0 mtu 9000",
                              "ip link set dev tap0 master br0",
                              "ip link set dev tap0 up"]


def test_attach_same_mtu():
    plan = plan_attach(seg(), tap(flags=DOWN), br0())
    assert list(plan.ops) == [SetMaster("tap0", "br0"), SetUp("tap0")]


def test_attach_is_idempotent():
    assert plan_attach(seg(), tap(master=10), br0()) == Plan()
    assert plan_attach(seg(), tap(master=10, mtu=9000), br0(mtu=9000)) == Plan()


def test_attach_attached_but_down():
    assert list(plan_attach(seg(), tap(master=10, flags=DOWN), br0()).ops) == [SetUp("tap0")]


def test_attach_on_another_master_refuses():
    with pytest.raises(UnavailableError) as raised:
        plan_attach(seg(), tap(master=11), br0())
    assert raised.value.status == 69
    assert "tap0" in str(raised.value)


NOT_TAPS = [
    link(3, "veth0", kind="veth"),
    link(4, "br1", kind="bridge"),
    link(1, "lo", kind=None, address=bytes(6), mtu=65536),
    link(2, "eth0", kind=None),
    link(5, "tun0", kind="tun", tun_type="tun", address=None),
    link(6, "mvtap0", kind="macvtap"),
    link(7, "tapx", kind="tun", tun_type=None),
]


@pytest.mark.parametrize("other", NOT_TAPS, ids=[l.name for l in NOT_TAPS])
def test_attach_refuses_non_tap(other):
    with pytest.raises(NotATapError) as raised:
        plan_attach(seg(), other, br0())
    assert raised.value.status == 65
    assert other.name in str(raised.value)
    with pytest.raises(NotATapError):
        require_tap(other)


@pytest.mark.parametrize("other", NOT_TAPS, ids=[l.name for l in NOT_TAPS])
def test_attach_refuses_non_tap_even_if_attached(other):
    with pytest.raises(NotATapError):
        plan_attach(seg(), dataclasses.replace(other, master=10), br0())


# --- plan_detach -------------------------------------------------------------------------

def test_detach_gone():
    plan = plan_detach(seg(), None, None)
    assert plan.ops == ()
    assert len(plan.notes) == 1 and plan.notes[0]
    assert plan_detach(seg(), None, br0()).ops == ()


def test_detach_attached_and_up():
    plan = plan_detach(seg(), tap(master=10), br0())
    assert list(plan.ops) == [SetNoMaster("tap0"), SetDown("tap0")]
    assert commands(plan) == ["ip link set dev tap0 nomaster", "ip link set dev tap0 down"]


def test_detach_attached_and_down():
    assert list(plan_detach(seg(), tap(master=10, flags=DOWN), br0()).ops) == \
        [SetNoMaster("tap0")]


def test_detach_already_detached_and_down():
    assert plan_detach(seg(), tap(flags=DOWN), br0()).ops == ()


@pytest.mark.parametrize("bridge", [br0(), None])
def test_detach_on_another_bridge_is_left_alone(bridge):
    plan = plan_detach(seg(), tap(master=11), bridge)
    assert plan.ops == ()
    assert len(plan.notes) == 1 and "br0" in plan.notes[0]


@pytest.mark.parametrize("other", NOT_TAPS, ids=[l.name for l in NOT_TAPS])
def test_detach_refuses_non_tap(other):
    with pytest.raises(NotATapError) as raised:
        plan_detach(seg(), dataclasses.replace(other, master=10), br0())
    assert raised.value.status == 65


# --- plan_teardown -----------------------------------------------------------------------

def test_teardown_refuses_foreign_ports():
    ports = [eth0(master=10), tap("tap1", 21, master=10), tap("tap0", 20, master=10)]
    with pytest.raises(UnavailableError) as raised:
        plan_teardown(seg(), br0(), ports, force=False)
    message = str(raised.value)
    assert raised.value.status == 69
    assert "tap0, tap1" in message
    assert "--force" in message


def test_teardown_forced():
    ports = [tap("tap0", 20, master=10), eth0(master=10)]
    plan = plan_teardown(seg(), br0(), ports, force=True)
    assert list(plan.ops) == [SetNoMaster("eth0"), DeleteLink("br0")]
    assert commands(plan) == ["ip link set dev eth0 nomaster", "ip link del dev br0"]


def test_teardown_uplink_detached_then_bridge_deleted():
    plan = plan_teardown(seg(), br0(), [eth0(master=10)], force=False)
    assert list(plan.ops) == [SetNoMaster("eth0"), DeleteLink("br0")]


def test_teardown_empty_bridge():
    assert list(plan_teardown(seg(uplink=None), br0(), [], force=False).ops) == \
        [DeleteLink("br0")]


def test_teardown_without_uplink_in_config_sees_every_port_as_foreign():
    with pytest.raises(UnavailableError):
        plan_teardown(seg(uplink=None), br0(), [eth0(master=10)], force=False)


def test_teardown_refuses_non_bridge():
    with pytest.raises(UnavailableError) as raised:
        plan_teardown(seg(), link(10, "br0", kind="veth"), [], force=True)
    assert raised.value.status == 69


# --- offloads ----------------------------------------------------------------------------

def test_enforce_lro_on():
    with pytest.raises(UnavailableError) as raised:
        check_offloads(seg(offload_check="enforce"), "eth0", gro=True, lro=True)
    message = str(raised.value)
    assert raised.value.status == 69
    assert "ethtool -K eth0 lro off" in message
    assert 'offload_check = "warn"' in message
    # DESIGN.md's example line, after "qemu-ifhooks: ifup-br0: tap3: "
    assert message == ("uplink eth0 has LRO enabled; run 'ethtool -K eth0 lro off' "
                       "or set offload_check = \"warn\"")


def test_enforce_gro_off():
    with pytest.raises(UnavailableError) as raised:
        check_offloads(seg(), "eth0", gro=False, lro=False)
    assert raised.value.status == 69
    assert "'ethtool -K eth0 gro on'" in str(raised.value)
    assert 'offload_check = "warn"' in str(raised.value)


def test_enforce_both_wrong():
    with pytest.raises(UnavailableError) as raised:
        check_offloads(seg(), "eth1", gro=False, lro=True)
    assert "'ethtool -K eth1 lro off gro on'" in str(raised.value)


@pytest.mark.parametrize("mode", ["enforce", "warn", "off"])
def test_offloads_fine(mode):
    assert check_offloads(seg(offload_check=mode), "eth0", gro=True, lro=False) is None
    assert offload_problem("eth0", gro=True, lro=False) is None


def test_warn_returns_the_message():
    message = check_offloads(seg(offload_check="warn"), "eth0", gro=True, lro=True)
    assert message is not None
    assert "ethtool -K eth0 lro off" in message
    message = check_offloads(seg(offload_check="warn"), "eth0", gro=False, lro=False)
    assert "ethtool -K eth0 gro on" in message


@pytest.mark.parametrize("gro, lro", [(True, True), (False, False), (False, True)])
def test_off_skips(gro, lro):
    assert check_offloads(seg(offload_check="off"), "eth0", gro=gro, lro=lro) is None


# --- unsupported -------------------------------------------------------------------------

def test_require_supported_tag():
    with pytest.raises(ConfigError) as raised:
        require_supported(seg(vlan=1, tag=101))
    assert raised.value.status == 78
    assert str(raised.value).startswith("vlan.1.tag: ")


def test_require_supported_untagged():
    assert require_supported(seg()) is None


def test_ops_are_values():
    assert SetUp("x") == SetUp("x")
    assert hash(SetMaster("a", "b")) == hash(SetMaster("a", "b"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        SetUp("x").ifname = "y"  # type: ignore[misc]
