"""Rate limits per guest, over rtnetlink's traffic-control messages.

Both directions go through an ifb device of the TAP's own with a token bucket (tbf)
as its root qdisc; the TAP's clsact qdisc sends every frame there, with a u32
match-all filter and a mirred redirect (this kernel has no `police` action):

    tx-TAP  what the guest sends: the TAP's ingress (clsact ingress hook)
    rx-TAP  what the guest receives: the TAP's egress (clsact egress hook)

The shaping is off the TAP's root qdisc on purpose: libvirt replaces that
(`tc qdisc add dev vnetN root handle 0: noqueue`) right after running the script,
which would throw away a tbf put there. The ifb devices outlive the TAP, so ifdown
and `up`/`down` remove them (they carry the alias "qemu-ifhooks: rx|tx of TAP").
"""

from __future__ import annotations

import errno
import struct

from .linkbuild import create_link, delete_link
from .netlink import Netlink
from .nlsocket import _NLM_F_CREATE, _NLM_F_EXCL, _attr, _nested, _u32_attr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_RTM_NEWQDISC, _RTM_DELQDISC, _RTM_NEWTFILTER = 36, 37, 44
_NLM_F_REPLACE = 0x100
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_TCA_KIND, _TCA_OPTIONS = 1, 2
_TC_H_ROOT = 0xFFFFFFFF
_TC_H_CLSACT = 0xFFFFFFF1
_CLSACT_HANDLE = 0xFFFF0000
HOOKS = {"tx": 0xFFFFFFF2, "rx": 0xFFFFFFF3}  # clsact ingress / egress: what the guest sends / receives
_TCA_TBF_PARMS, _TCA_TBF_RATE64, _TCA_TBF_BURST = 1, 4, 6
_RATESPEC = struct.Struct("=BBHhHI")  # cell_log, linklayer, overhead, cell_align, mpu, rate
_TC_LINKLAYER_ETHERNET = 1
_TCA_U32_SEL, _TCA_U32_ACT = 5, 7
_U32_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = struct.Struct("=IIii")  # mask, value, off, offmask: 0 0 0 0 matches every frame
_TC_U32_TERMINAL = 1
_TCA_ACT_KIND, _TCA_ACT_OPTIONS = 1, 2
_TCA_MIRRED_PARMS = 2
_MIRRED = struct.Struct("=IIiiiiI")  # index, capab, action, refcnt, bindcnt, eaction, ifindex
_TC_ACT_STOLEN = 4
_TCA_EGRESS_REDIR = 1
_ETH_P_ALL_NET = 0x0300  # htons(ETH_P_ALL)
MARK = "qemu-ifhooks: {direction} of {tap}"


def ifb_name(direction: str, tap: str) -> str:
    """`rx-tap0`; a TAP name too long for that is shortened to a stable hash."""
    raw = tap.encode("utf-8", "surrogateescape")
    if len(raw) <= 12 and tap.isascii() and tap.isprintable():
        return f"{direction}-{tap}"
    import zlib  # only for long or odd names

    return f"{direction}-{zlib.crc32(raw):08x}"


def tbf_limits(mbit: int) -> tuple:
    """(bytes per second, burst, queue limit) for `mbit`: a burst of 4 ms of traffic
    but at least 16 KiB (tbf needs one whole frame per token bucket, and more keeps the
    rate at small limits), and a queue of 50 ms on top."""
    rate = mbit * 125_000
    burst = max(16 * 1024, rate // 250)
    return rate, burst, burst + rate // 20


def _tcmsg(index: int, handle: int, parent: int, info: int = 0) -> bytes:
    return _TCMSG.pack(0, index, handle, parent, info)


def set_tbf(nl: Netlink, index: int, mbit: int) -> None:
    """`tc qdisc replace dev X root tbf rate MBITmbit burst B limit L`."""
    rate, burst, limit = tbf_limits(mbit)
    spec = _RATESPEC.pack(0, _TC_LINKLAYER_ETHERNET, 0, 0, 0, min(rate, 0xFFFFFFFF))
    parms = spec + bytes(_RATESPEC.size) + struct.pack("=III", limit, 0, 0)  # no peak rate
    options = [_attr(_TCA_TBF_PARMS, parms), _u32_attr(_TCA_TBF_BURST, burst)]
    if rate > 0xFFFFFFFF:
        options.append(_attr(_TCA_TBF_RATE64, struct.pack("=Q", rate)))
    nl._ack(_RTM_NEWQDISC, _NLM_F_CREATE | _NLM_F_REPLACE,
            _tcmsg(index, 0x10000, _TC_H_ROOT) + _attr(_TCA_KIND, b"tbf\0") + _nested(_TCA_OPTIONS, *options))


def add_clsact(nl: Netlink, index: int) -> None:
    nl._ack(_RTM_NEWQDISC, _NLM_F_CREATE | _NLM_F_EXCL,
            _tcmsg(index, _CLSACT_HANDLE, _TC_H_CLSACT) + _attr(_TCA_KIND, b"clsact\0"))


def delete_clsact(nl: Netlink, index: int) -> bool:
    """Remove the clsact qdisc (and its filters); False when there was none."""
    try:
        nl._ack(_RTM_DELQDISC, 0, _tcmsg(index, _CLSACT_HANDLE, _TC_H_CLSACT))
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.EINVAL):  # no such qdisc
            return False
        raise
    return True


def redirect(nl: Netlink, index: int, direction: str, ifb_index: int) -> None:
    """`tc filter add dev X ingress|egress protocol all u32 match u32 0 0 action mirred
    egress redirect dev IFB`."""
    sel = _U32_SEL.pack(_TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
    mirred = _MIRRED.pack(0, 0, _TC_ACT_STOLEN, 0, 0, _TCA_EGRESS_REDIR, ifb_index)
    action = _nested(1, _attr(_TCA_ACT_KIND, b"mirred\0"),
                     _nested(_TCA_ACT_OPTIONS, _attr(_TCA_MIRRED_PARMS, mirred)))
    options = _nested(_TCA_OPTIONS, _attr(_TCA_U32_SEL, sel), _nested(_TCA_U32_ACT, action))
    nl._ack(_RTM_NEWTFILTER, _NLM_F_CREATE | _NLM_F_EXCL,
            _tcmsg(index, 0, HOOKS[direction], (1 << 16) | _ETH_P_ALL_NET) + _attr(_TCA_KIND, b"u32\0") + options)


def shape(nl: Netlink, tap_index: int, tap: str, rx_mbit: Optional[int], tx_mbit: Optional[int]) -> None:
    """The TAP's limits, replacing whatever shaping it had."""
    delete_clsact(nl, tap_index)
    wanted = {"rx": rx_mbit, "tx": tx_mbit}
    if any(wanted.values()):
        add_clsact(nl, tap_index)
    for direction, mbit in wanted.items():
        name = ifb_name(direction, tap)
        if not mbit:
            remove_ifb(nl, name)
            continue
        ifb = nl.get_link(name) or _create_ifb(nl, name, MARK.format(direction=direction, tap=tap))
        set_tbf(nl, ifb.index, mbit)
        redirect(nl, tap_index, direction, ifb.index)


def _create_ifb(nl: Netlink, name: str, alias: str):
    create_link(nl, name, "ifb")
    ifb = nl.get_link(name)
    if ifb is None:
        raise OSError(errno.ENODEV, f"{name} vanished once created")
    nl.set_link(ifb.index, alias=alias, up=True)
    return ifb


def remove_ifb(nl: Netlink, name: str) -> bool:
    """Delete the ifb by that name if it is the project's: its alias says so, or it
    has none yet (made, and the hook stopped before marking it)."""
    link = nl.get_link(name)
    if link is None or link.kind != "ifb" or not (link.alias or "qemu-ifhooks: ").startswith("qemu-ifhooks: "):
        return False
    delete_link(nl, link.index)
    return True


def unshape(nl: Netlink, tap: str, tap_index: Optional[int]) -> None:
    """No shaping for the TAP: its ifb devices go (they outlive the TAP), and its clsact."""
    if tap_index:
        delete_clsact(nl, tap_index)
    for direction in HOOKS:
        remove_ifb(nl, ifb_name(direction, tap))
