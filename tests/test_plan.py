"""The pure planner: segments and observed links in, operations out."""

from __future__ import annotations


import pytest

from qemu_ifhooks.bridgevlan import BridgeVlan
from qemu_ifhooks.buildops import CreateBridge, CreateVlan, DeleteLink, SetAlias
from qemu_ifhooks.buildplan import derived_bridge_mac, plan_teardown, predicted_bridge
from qemu_ifhooks.configmodel import Segment
from qemu_ifhooks.errors import NotATapError, UnavailableError
from qemu_ifhooks.netlink import IFF_LOWER_UP, IFF_RUNNING, IFF_UP, Link
from qemu_ifhooks.ops import BridgeVlanAdd, BridgeVlanDel, SetDown, SetMaster, SetMtu, SetNoMaster, SetUp
from qemu_ifhooks.plan import (Plan, check_offloads, kernel_lacks, made_by_hooks, offload_problem,
                               plan_attach, plan_bridge, plan_detach, require_tap)

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
        plan_attach(seg(), other.replace(master=10), br0())


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
        plan_detach(seg(), other.replace(master=10), br0())
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


# --- 802.1Q: a classic bridge per VLAN, its uplink port <uplink>.<tag> ------------------

def classic(**kw) -> Segment:
    return seg(**{"vlan": 1, "bridge": "br1", "tag": 101, **kw})


def br1(**kw) -> Link:
    return link(11, "br1", kind="bridge", **kw)


def eth0_101(parent=None, **kw) -> Link:
    fields = dict(kind="vlan", address=ETH0_MAC, master=0)
    fields.update(kw)
    vlan = link(30, "eth0.101", **{k: v for k, v in fields.items() if k not in ("vid", "alias")})
    return vlan.replace(vlan_id=fields.get("vid", 101), link=(parent or eth0()).index,
                               alias=fields.get("alias"))


def test_classic_creates_the_subinterface_first_and_marks_it():
    plan = plan_bridge(classic(), None, eth0(flags=DOWN), machine_id=MID)
    assert list(plan.ops) == [
        CreateVlan("eth0.101", "eth0", 101),  # a kernel without 802.1Q refuses this first
        SetAlias("eth0.101", "qemu-ifhooks: vlan.1"),
        CreateBridge("br1", ETH0_MAC, False, 0),
        SetMaster("eth0.101", "br1"),
        SetUp("eth0"),  # the kernel brings a VLAN device up only on a parent that is up
        SetUp("eth0.101"),
        SetUp("br1"),
    ]
    assert commands(plan)[:2] == ["ip link add link eth0 name eth0.101 type vlan id 101",
                                  "ip link set dev eth0.101 alias 'qemu-ifhooks: vlan.1'"]
    assert plan.ops[2].command() == ("ip link add br1 address 52:54:00:aa:bb:cc type bridge "
                                     "stp_state 0 forward_delay 0")


def test_classic_parent_up_and_mtu_pinned():
    plan = plan_bridge(classic(mtu=9000), None, eth0(mtu=9000), machine_id=MID)
    assert [type(op) for op in plan.ops] == [CreateVlan, SetAlias, CreateBridge, SetMtu,
                                            SetMaster, SetUp, SetUp]
    assert plan.ops[-2:] == (SetUp("eth0.101"), SetUp("br1"))


def test_classic_uses_an_existing_subinterface_as_it_is():
    admins = eth0_101(flags=DOWN, address=bytes.fromhex("020000000101"))
    plan = plan_bridge(classic(), None, eth0(), vlan_port=admins, machine_id=MID)
    assert list(plan.ops) == [
        CreateBridge("br1", bytes.fromhex("020000000101"), False, 0),
        SetMaster("eth0.101", "br1"),
        SetUp("eth0.101"),
        SetUp("br1"),
    ]


def test_classic_fully_set_up():
    assert plan_bridge(classic(), br1(), eth0(), vlan_port=eth0_101(master=11)) == Plan()


def test_classic_subinterface_deleted_by_hand_is_made_again():
    plan = plan_bridge(classic(), br1(), eth0(), machine_id=MID)
    assert list(plan.ops) == [CreateVlan("eth0.101", "eth0", 101),
                              SetAlias("eth0.101", "qemu-ifhooks: vlan.1"),
                              SetMaster("eth0.101", "br1"), SetUp("eth0.101")]


@pytest.mark.parametrize("impostor, what", [
    (link(30, "eth0.101", kind="veth"), "is a veth device, not VLAN 101 on eth0"),
    (eth0_101(vid=102), "is VLAN 102 on ifindex 2, not VLAN 101 on eth0"),
    (eth0_101(parent=link(7, "eth7")), "is VLAN 101 on ifindex 7, not VLAN 101 on eth0"),
])
def test_classic_refuses_a_subinterface_that_is_something_else(impostor, what):
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(classic(), None, eth0(), vlan_port=impostor)
    assert raised.value.status == 69
    assert str(raised.value) == f"eth0.101 exists but {what}; rename or delete it, or change vlan.1"


def test_classic_refusals_concern_the_subinterface():
    with pytest.raises(UnavailableError, match="uplink eth0.101 is already a port of another"):
        plan_bridge(classic(), None, eth0(master=10), vlan_port=eth0_101(master=99))
    with pytest.raises(UnavailableError, match="uplink eth0.101 carries 192.0.2.7/24"):
        plan_bridge(classic(), None, eth0(), ["192.0.2.7/24"], vlan_port=eth0_101())
    with pytest.raises(UnavailableError, match="uplink eth0 does not exist"):
        plan_bridge(classic(), None, None)
    with pytest.raises(UnavailableError, match="qemu-ifhooks up 1"):
        plan_bridge(classic(create=False), None, eth0())
    # The parent may well be a port of another bridge (br0 of an untagged segment).
    plan = plan_bridge(classic(), None, eth0(master=10), machine_id=MID)
    assert plan.ops[0] == CreateVlan("eth0.101", "eth0", 101)


# --- 802.1Q: a VLAN-aware bridge shared by tagged segments ------------------------------

VIDS = (100, 101, 102)


def aware(vlan=1, tag=101, trunk=(), **kw) -> Segment:
    return seg(vlan=vlan, tag=tag, trunk=tuple(trunk), bridge_vids=VIDS, **kw)


def vbr0(default_pvid=0, filtering=True, **kw) -> Link:
    return br0(**kw).replace(vlan_filtering=filtering, vlan_default_pvid=default_pvid)


def test_vlan_aware_bridge_created_with_filtering_and_every_tag_on_the_uplink():
    plan = plan_bridge(aware(), None, eth0(), machine_id=MID)
    assert list(plan.ops) == [
        CreateBridge("br0", ETH0_MAC, False, 0, vlan_aware=True),
        SetMaster("eth0", "br0"),
        BridgeVlanAdd("eth0", 100), BridgeVlanAdd("eth0", 101), BridgeVlanAdd("eth0", 102),
        SetUp("br0"),
    ]
    assert commands(plan)[:3] == [
        "ip link add br0 address 52:54:00:aa:bb:cc type bridge stp_state 0 forward_delay 0 "
        "vlan_filtering 1 vlan_default_pvid 0",
        "ip link set dev eth0 master br0",
        "bridge vlan add dev eth0 vid 100",
    ]


def test_vlan_aware_bridge_without_uplink():
    plan = plan_bridge(aware(uplink=None), None, None, machine_id=MID)
    assert [type(op) for op in plan.ops] == [CreateBridge, SetUp]
    assert plan.ops[0].vlan_aware


def test_vlan_aware_existing_bridge_gets_missing_tags_only():
    have = [BridgeVlan(100, False, False), BridgeVlan(101, False, False)]
    assert plan_bridge(aware(), vbr0(), eth0(master=10), uplink_vlans=have).ops == \
        (BridgeVlanAdd("eth0", 102),)
    every = have + [BridgeVlan(102, False, False)]
    assert plan_bridge(aware(), vbr0(), eth0(master=10), uplink_vlans=every) == Plan()
    # A VID the admin set up otherwise on the uplink (a native VLAN) is left as it is.
    native = have + [BridgeVlan(102, True, True)]
    assert plan_bridge(aware(), vbr0(), eth0(master=10), uplink_vlans=native) == Plan()


def test_vlan_aware_existing_bridge_uplink_not_attached_yet():
    plan = plan_bridge(aware(), vbr0(default_pvid=1), eth0())
    assert list(plan.ops) == [SetMaster("eth0", "br0")] + [BridgeVlanAdd("eth0", v) for v in VIDS]


def test_vlan_aware_refuses_a_bridge_without_filtering():
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(aware(), vbr0(filtering=False), eth0(master=10))
    message = str(raised.value)
    assert raised.value.status == 69
    assert message.startswith("bridge br0 exists with VLAN filtering off, but vlan.1 shares it")
    assert "'ip link set dev br0 type bridge vlan_filtering 1 vlan_default_pvid 0'" in message


def test_vlan_aware_on_a_kernel_without_filtering():
    # Such a kernel reports no default PVID for a bridge.
    with pytest.raises(UnavailableError) as raised:
        plan_bridge(aware(), br0(), eth0(master=10))
    assert raised.value.status == 69
    assert str(raised.value) == str(kernel_lacks("CONFIG_BRIDGE_VLAN_FILTERING"))


def test_kernel_lacks_says_what_and_what_to_do():
    assert str(kernel_lacks("CONFIG_VLAN_8021Q")) == (
        "this kernel lacks 802.1Q VLAN support (CONFIG_VLAN_8021Q); load it with 'modprobe 8021q'")
    lacks = kernel_lacks("CONFIG_BRIDGE_VLAN_FILTERING")
    assert str(lacks).startswith("this kernel lacks bridge VLAN filtering "
                                 "(CONFIG_BRIDGE_VLAN_FILTERING)")
    assert lacks.status == kernel_lacks("CONFIG_VLAN_8021Q").status == 69


def test_vlan_aware_tap_gets_its_tag_untagged_and_nothing_else():
    plan = plan_attach(aware(), tap(flags=DOWN), vbr0())
    assert list(plan.ops) == [SetMaster("tap0", "br0"),
                              BridgeVlanAdd("tap0", 101, pvid_untagged=True), SetUp("tap0")]
    assert plan.ops[1].command() == "bridge vlan add dev tap0 vid 101 pvid untagged"


def test_vlan_aware_trunk_tap():
    plan = plan_attach(aware(vlan=3, tag=100, trunk=(102, 101)), tap(flags=DOWN), vbr0())
    assert list(plan.ops) == [SetMaster("tap0", "br0"),
                              BridgeVlanAdd("tap0", 100, pvid_untagged=True),
                              BridgeVlanAdd("tap0", 102), BridgeVlanAdd("tap0", 101),
                              SetUp("tap0")]
    assert [op.command() for op in plan.ops[2:4]] == ["bridge vlan add dev tap0 vid 102",
                                                      "bridge vlan add dev tap0 vid 101"]


def test_vlan_aware_tap_on_a_bridge_with_a_default_pvid_leaves_vlan_1():
    plan = plan_attach(aware(), tap(flags=DOWN), vbr0(default_pvid=1))
    assert list(plan.ops) == [SetMaster("tap0", "br0"),
                              BridgeVlanAdd("tap0", 101, pvid_untagged=True),
                              BridgeVlanDel("tap0", 1), SetUp("tap0")]
    assert plan.ops[2].command() == "bridge vlan del dev tap0 vid 1"
    # ... unless the TAP is to have VLAN 1 (tagged, as a trunk VLAN).
    plan = plan_attach(aware(trunk=(1,)), tap(flags=DOWN), vbr0(default_pvid=1))
    assert list(plan.ops) == [SetMaster("tap0", "br0"),
                              BridgeVlanAdd("tap0", 101, pvid_untagged=True),
                              BridgeVlanAdd("tap0", 1), SetUp("tap0")]


def test_vlan_aware_tap_already_attached():
    segment = aware(trunk=(102,))
    right = [BridgeVlan(101, True, True), BridgeVlan(102, False, False)]
    assert plan_attach(segment, tap(master=10), vbr0(), right) == Plan()
    wrong = [BridgeVlan(1, False, True), BridgeVlan(101, False, True), BridgeVlan(102, True, True)]
    assert list(plan_attach(segment, tap(master=10), vbr0(), wrong).ops) == [
        BridgeVlanAdd("tap0", 101, pvid_untagged=True), BridgeVlanAdd("tap0", 102),
        BridgeVlanDel("tap0", 1)]


def test_untagged_segment_plans_no_vlans_on_a_filtering_bridge():
    assert list(plan_attach(seg(), tap(flags=DOWN), vbr0(default_pvid=1)).ops) == \
        [SetMaster("tap0", "br0"), SetUp("tap0")]


def test_predicted_vlan_aware_bridge_plans_the_tap_as_the_hook_will():
    build = plan_bridge(aware(), None, eth0(mtu=9000), machine_id=MID)
    bridge = predicted_bridge(build, eth0(mtu=9000))
    assert (bridge.vlan_filtering, bridge.vlan_default_pvid, bridge.mtu) == (True, 0, 9000)
    assert list(plan_attach(aware(), tap(flags=DOWN), bridge).ops) == [
        SetMtu("tap0", 9000), SetMaster("tap0", "br0"),
        BridgeVlanAdd("tap0", 101, pvid_untagged=True), SetUp("tap0")]
    plain = predicted_bridge(plan_bridge(seg(), None, eth0(), machine_id=MID), eth0())
    assert (plain.vlan_filtering, plain.vlan_default_pvid) == (False, None)


# --- down: bridges, and the subinterfaces the hooks made ------------------------------------

MARKED = "qemu-ifhooks: vlan.1"


def test_made_by_hooks():
    assert made_by_hooks(eth0_101(alias=MARKED))
    assert made_by_hooks(eth0_101(alias="qemu-ifhooks: vlan.7"))  # renumbered since
    for alias in (None, "", "uplink to the switch", "qemu-ifhooks", "my qemu-ifhooks: x"):
        assert not made_by_hooks(eth0_101(alias=alias))


def test_teardown_classic_deletes_the_marked_subinterface_after_the_bridge():
    port = eth0_101(master=11, alias=MARKED)
    plan = plan_teardown(classic(), br1(), [port], force=False, vlan_port=port)
    assert list(plan.ops) == [SetNoMaster("eth0.101"), DeleteLink("br1"), DeleteLink("eth0.101")]
    assert plan.notes == ()


def test_teardown_classic_leaves_an_admins_subinterface():
    port = eth0_101(master=11)
    plan = plan_teardown(classic(), br1(), [port], force=False, vlan_port=port)
    assert list(plan.ops) == [SetNoMaster("eth0.101"), DeleteLink("br1")]
    assert plan.notes == ("eth0.101 left in place: qemu-ifhooks did not create it",)


def test_teardown_classic_without_bridge():
    free = eth0_101(alias=MARKED)
    assert list(plan_teardown(classic(), None, [], False, free).ops) == [DeleteLink("eth0.101")]
    taken = eth0_101(alias=MARKED, master=12)
    plan = plan_teardown(classic(), None, [], False, taken)
    assert plan.ops == () and "a port of another master (ifindex 12)" in plan.notes[0]
    assert plan_teardown(classic(), None, [], False, None) == Plan()


def test_teardown_classic_parent_on_the_bridge_is_foreign():
    port = eth0_101(master=11, alias=MARKED)
    with pytest.raises(UnavailableError, match="still has ports eth0 "):
        plan_teardown(classic(), br1(), [port, eth0(master=11)], False, port)


def test_teardown_vlan_aware():
    plan = plan_teardown(aware(), vbr0(), [eth0(master=10)], force=False)
    assert list(plan.ops) == [SetNoMaster("eth0"), DeleteLink("br0")]


def test_ops_are_values():
    assert SetUp("x") == SetUp("x")
    assert BridgeVlanAdd("tap0", 5) != BridgeVlanAdd("tap0", 5, pvid_untagged=True)
    assert hash(SetMaster("a", "b")) == hash(SetMaster("a", "b"))
    with pytest.raises(AttributeError):
        SetUp("x").ifname = "y"  # type: ignore[misc]
