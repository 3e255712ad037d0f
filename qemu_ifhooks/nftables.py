"""nf_tables over netlink, for the rules that guard each guest's TAP.

One table of the project's own in the bridge family, `qemu_ifhooks`:

    table bridge qemu_ifhooks {
        map ports { type ifname : verdict }            # TAP name -> its chain
        chain guests {                                  # every frame a bridge port receives
            type filter hook prerouting priority filter; policy accept;
            iifname vmap @ports                         # one hash lookup, however many TAPs
        }
        chain port_TAP { ... }                          # what that TAP may send
    }

A TAP's rules are a chain of their own and one map element, written in one
transaction (nfnetlink batch) that also flushes whatever the chain held: a new TAP
of the same name never inherits the rules of a VM that was killed, and a failed
write changes nothing. `nft` would cost about 5 ms a call; the messages here are
what it would send.

The rules themselves (which frames a TAP may send) are planned in portsecurity.py;
this module only encodes them: a rule is a list of expressions (`Meta`, `Payload`,
`Cmp`, `Bitwise`, `Verdict`), as in `nft --debug=netlink`.
"""

from __future__ import annotations

import errno
import struct

from .nlsocket import (NETLINK_NETFILTER, NetlinkSocket, _NLM_F_CREATE, _NLM_F_EXCL, _attr,
                       _attr_items, _attrs, _cstr, _nested)
from .record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Sequence

TABLE = "qemu_ifhooks"
DISPATCH_CHAIN = "guests"
PORTS_MAP = "ports"
CHAIN_PREFIX = "port_"

NFPROTO_BRIDGE = 7
_AF_UNSPEC = 0
_NFNL_SUBSYS_NFTABLES = 10
_NFNL_MSG_BATCH_BEGIN = 16
_NFNL_MSG_BATCH_END = 17
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big-endian)

# linux/netfilter/nf_tables.h
_NEWTABLE, _GETTABLE, _DELTABLE = 0, 1, 2
_NEWCHAIN, _GETCHAIN, _DELCHAIN = 3, 4, 5
_NEWRULE, _GETRULE, _DELRULE = 6, 7, 8
_NEWSET = 9
_NEWSETELEM, _GETSETELEM, _DELSETELEM = 12, 13, 14
_TABLE_NAME = 1
_CHAIN_TABLE, _CHAIN_NAME, _CHAIN_HOOK, _CHAIN_POLICY, _CHAIN_TYPE = 1, 3, 4, 5, 7
_HOOK_HOOKNUM, _HOOK_PRIORITY = 1, 2
_RULE_TABLE, _RULE_CHAIN, _RULE_EXPRESSIONS = 1, 2, 4
_LIST_ELEM = 1
_EXPR_NAME, _EXPR_DATA = 1, 2
_SET_TABLE, _SET_NAME, _SET_FLAGS, _SET_KEY_TYPE, _SET_KEY_LEN, _SET_DATA_TYPE, _SET_DATA_LEN = 1, 2, 3, 4, 5, 6, 7
_SET_MAP = 0x8
_SET_ELEM_LIST_TABLE, _SET_ELEM_LIST_SET, _SET_ELEM_LIST_ELEMENTS = 1, 2, 3
_SET_ELEM_KEY, _SET_ELEM_DATA = 1, 2
_DATA_VALUE, _DATA_VERDICT = 1, 2
_VERDICT_CODE, _VERDICT_CHAIN = 1, 2
_DATA_VERDICT_TYPE = 0xFFFFFF00
_TYPE_IFNAME = 41  # nft's own datatype number, so that `nft list` shows the map as it wrote it
_NF_BR_PRE_ROUTING = 0
_PRIORITY_FILTER = -200  # the bridge family's "filter"
_IFNAMSIZ = 16

DROP, ACCEPT, JUMP, RETURN = 0, 1, -3, -5
REG_VERDICT, REG_1 = 0, 1

_META_KEYS = {"protocol": 1, "iifname": 6, "l4proto": 16}
_PAYLOAD_BASES = {"ll": 0, "network": 1, "transport": 2}
_CMP_OPS = {"==": 0, "!=": 1}


def _be32(value: int) -> bytes:
    return struct.pack(">i" if value < 0 else ">I", value)


def _string(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def ifname_key(name: str) -> bytes:
    """An interface name as nf_tables keys and compares it: IFNAMSIZ bytes, NUL-padded."""
    raw = name.encode("utf-8", "surrogateescape")
    return raw + b"\0" * (_IFNAMSIZ - len(raw))


def port_chain(tap: str) -> str:
    """The chain of a TAP's rules. Chain names are shown by `nft`; a TAP name with
    bytes it would not print is spelled in hex."""
    if tap.isascii() and tap.isprintable() and " " not in tap:
        return CHAIN_PREFIX + tap
    return CHAIN_PREFIX + "x" + tap.encode("utf-8", "surrogateescape").hex()


# --- expressions ----------------------------------------------------------------------

def _expr(name: str, *attrs: bytes) -> bytes:
    return _nested(_LIST_ELEM, _attr(_EXPR_NAME, _string(name)), _nested(_EXPR_DATA, *attrs))


class Meta(Record):
    """Load a meta key (protocol, iifname, l4proto) into register 1."""

    __slots__ = ("key",)

    def encode(self) -> bytes:
        return _expr("meta", _attr(1, _be32(REG_1)), _attr(2, _be32(_META_KEYS[self.key])))


class Payload(Record):
    """Load `length` bytes at `offset` of a header (ll, network, transport) into register 1."""

    __slots__ = ("base", "offset", "length")

    def encode(self) -> bytes:
        return _expr("payload", _attr(1, _be32(REG_1)), _attr(2, _be32(_PAYLOAD_BASES[self.base])),
                     _attr(3, _be32(self.offset)), _attr(4, _be32(self.length)))


class Cmp(Record):
    """Compare register 1 with `data` (== or !=); the rule stops here when it does not hold."""

    __slots__ = ("op", "data")

    def encode(self) -> bytes:
        return _expr("cmp", _attr(1, _be32(REG_1)), _attr(2, _be32(_CMP_OPS[self.op])),
                     _nested(3, _attr(_DATA_VALUE, self.data)))


class Bitwise(Record):
    """Register 1 &= mask (for a prefix)."""

    __slots__ = ("mask",)

    def encode(self) -> bytes:
        zero = bytes(len(self.mask))
        return _expr("bitwise", _attr(1, _be32(REG_1)), _attr(2, _be32(REG_1)),
                     _attr(3, _be32(len(self.mask))), _nested(4, _attr(_DATA_VALUE, self.mask)),
                     _nested(5, _attr(_DATA_VALUE, zero)))


class Lookup(Record):
    """Look register 1 up in a map of verdicts (a vmap)."""

    __slots__ = ("set_name",)

    def encode(self) -> bytes:
        return _expr("lookup", _attr(1, _string(self.set_name)), _attr(2, _be32(REG_1)),
                     _attr(3, _be32(REG_VERDICT)))


class Verdict(Record):
    __slots__ = ("code", "chain")
    _defaults = {"chain": None}

    def data(self) -> bytes:
        attrs = [_attr(_VERDICT_CODE, _be32(self.code))]
        if self.chain is not None:
            attrs.append(_attr(_VERDICT_CHAIN, _string(self.chain)))
        return _nested(_DATA_VERDICT, *attrs)

    def encode(self) -> bytes:
        return _expr("immediate", _attr(1, _be32(REG_VERDICT)), _nested(2, self.data()))


# --- messages ---------------------------------------------------------------------------

def _msg(cmd: int, flags: int, *attrs: bytes, family: int = NFPROTO_BRIDGE) -> tuple:
    return ((_NFNL_SUBSYS_NFTABLES << 8) | cmd, flags, _NFGENMSG.pack(family, 0, 0) + b"".join(attrs))


def _rule(chain: str, expressions: Sequence) -> tuple:
    return _msg(_NEWRULE, _NLM_F_CREATE | 0x800,  # NLM_F_APPEND
                _attr(_RULE_TABLE, _string(TABLE)), _attr(_RULE_CHAIN, _string(chain)),
                _nested(_RULE_EXPRESSIONS, *(e.encode() for e in expressions)))


def _chain(name: str) -> tuple:
    return _msg(_NEWCHAIN, _NLM_F_CREATE, _attr(_CHAIN_TABLE, _string(TABLE)), _attr(_CHAIN_NAME, _string(name)))


def _flush(chain: str) -> tuple:
    return _msg(_DELRULE, 0, _attr(_RULE_TABLE, _string(TABLE)), _attr(_RULE_CHAIN, _string(chain)))


def _ports_element(cmd: int, tap: str) -> tuple:
    element = [_nested(_SET_ELEM_KEY, _attr(_DATA_VALUE, ifname_key(tap)))]
    if cmd == _NEWSETELEM:
        element.append(_nested(_SET_ELEM_DATA, Verdict(JUMP, port_chain(tap)).data()))
    return _msg(cmd, _NLM_F_CREATE if cmd == _NEWSETELEM else 0,
                _attr(_SET_ELEM_LIST_TABLE, _string(TABLE)), _attr(_SET_ELEM_LIST_SET, _string(PORTS_MAP)),
                _nested(_SET_ELEM_LIST_ELEMENTS, _nested(_LIST_ELEM, *element)))


def _table_messages() -> List[tuple]:
    """The table, its map and its dispatching chain: created once, whole (EXCL on the
    table: of two hooks creating it at once, one batch wins and the other changes
    nothing)."""
    hook = _nested(_CHAIN_HOOK, _attr(_HOOK_HOOKNUM, _be32(_NF_BR_PRE_ROUTING)),
                   _attr(_HOOK_PRIORITY, _be32(_PRIORITY_FILTER)))
    return [
        _msg(_NEWTABLE, _NLM_F_CREATE | _NLM_F_EXCL, _attr(_TABLE_NAME, _string(TABLE))),
        _msg(_NEWSET, _NLM_F_CREATE, _attr(_SET_TABLE, _string(TABLE)), _attr(_SET_NAME, _string(PORTS_MAP)),
             _attr(_SET_FLAGS, _be32(_SET_MAP)), _attr(_SET_KEY_TYPE, _be32(_TYPE_IFNAME)),
             _attr(_SET_KEY_LEN, _be32(_IFNAMSIZ)), _attr(_SET_DATA_TYPE, _be32(_DATA_VERDICT_TYPE)),
             _attr(_SET_DATA_LEN, _be32(0)), _attr(10, _be32(1)),  # NFTA_SET_ID
             # NFTA_SET_USERDATA: the key is in host byte order (a string), so that
             # `nft list` shows the TAP names.
             _attr(13, b"\x00\x04" + struct.pack("=I", 1))),
        _msg(_NEWCHAIN, _NLM_F_CREATE, _attr(_CHAIN_TABLE, _string(TABLE)),
             _attr(_CHAIN_NAME, _string(DISPATCH_CHAIN)), hook, _attr(_CHAIN_POLICY, _be32(ACCEPT)),
             _attr(_CHAIN_TYPE, _string("filter"))),
        _rule(DISPATCH_CHAIN, [Meta("iifname"), Lookup(PORTS_MAP)]),
    ]


class Nftables:
    """The project's nf_tables table, on one NETLINK_NETFILTER socket."""

    def __init__(self) -> None:
        self.sock = NetlinkSocket(NETLINK_NETFILTER)

    def __enter__(self) -> "Nftables":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _transaction(self, messages: List[tuple]) -> None:
        res_id = _NFGENMSG.pack(_AF_UNSPEC, 0, _NFNL_SUBSYS_NFTABLES)
        self.sock.batch((_NFNL_MSG_BATCH_BEGIN, 0, res_id), messages, (_NFNL_MSG_BATCH_END, 0, res_id))

    def table_exists(self) -> bool:
        try:
            self.sock.request((_NFNL_SUBSYS_NFTABLES << 8) | _GETTABLE,
                              _NFGENMSG.pack(NFPROTO_BRIDGE, 0, 0) + _attr(_TABLE_NAME, _string(TABLE)))
        except FileNotFoundError:
            return False
        return True

    def ensure_table(self) -> None:
        if self.table_exists():
            return
        try:
            self._transaction(_table_messages())
        except FileExistsError:
            pass  # another hook made it in the meantime

    def set_port(self, tap: str, rules: Sequence[Sequence]) -> None:
        """The TAP's chain holds exactly `rules` (each a list of expressions) and the
        dispatch map sends its frames there: one transaction."""
        chain = port_chain(tap)
        messages = [_chain(chain), _flush(chain)]
        messages += [_rule(chain, rule) for rule in rules]
        messages.append(_ports_element(_NEWSETELEM, tap))
        self._transaction(messages)

    def remove_port(self, tap: str) -> bool:
        """No chain and no map element for the TAP; False when there was none."""
        chain = port_chain(tap)
        try:
            self._transaction([_ports_element(_DELSETELEM, tap), _flush(chain),
                               _msg(_DELCHAIN, 0, _attr(_CHAIN_TABLE, _string(TABLE)),
                                    _attr(_CHAIN_NAME, _string(chain)))])
        except FileNotFoundError:  # no element (or no table): a chain alone may remain
            try:
                self._transaction([_flush(chain), _msg(_DELCHAIN, 0, _attr(_CHAIN_TABLE, _string(TABLE)),
                                                       _attr(_CHAIN_NAME, _string(chain)))])
            except FileNotFoundError:
                return False
        return True

    def has_port(self, tap: str) -> bool:
        """The dispatch map has an element for the TAP (its rules exist)."""
        try:
            self.sock.request((_NFNL_SUBSYS_NFTABLES << 8) | _GETSETELEM, _ports_element(_DELSETELEM, tap)[2])
        except FileNotFoundError:  # no such element, map or table
            return False
        return True

    def ports(self) -> List[str]:
        """The TAP names that have rules (the dispatch map's keys)."""
        payload = _NFGENMSG.pack(NFPROTO_BRIDGE, 0, 0) + _attr(_SET_ELEM_LIST_TABLE, _string(TABLE)) + \
            _attr(_SET_ELEM_LIST_SET, _string(PORTS_MAP))
        try:
            replies = self.sock._dump((_NFNL_SUBSYS_NFTABLES << 8) | _GETSETELEM, payload)
        except FileNotFoundError:
            return []
        names = []
        for _, _, msg in replies:
            elements = _attrs(msg, _NFGENMSG.size).get(_SET_ELEM_LIST_ELEMENTS)
            for _, element in _attr_items(elements or b""):
                key = _attrs(element).get(_SET_ELEM_KEY)
                value = _attrs(key).get(_DATA_VALUE) if key is not None else None
                if value is not None:
                    names.append(_cstr(value))
        return names


def missing_nftables(error: OSError) -> bool:
    """The kernel has no nf_tables (or no bridge family for it)."""
    return error.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT, errno.EOPNOTSUPP)
