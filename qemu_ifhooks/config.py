"""The TOML map of bridge per QEMU VLAN: its schema and validation.

`parse_config` is pure (a parsed TOML document in, the immutable records of
configmodel.py out); configfile.py is the thin edge that finds, checks and reads the
file.
"""

from __future__ import annotations

from .configfile import MAX_CONFIG_BYTES
from .configmodel import (MAX_VLAN, OFFLOAD_MODES, PORT_SECURITY_MODES, Config, Segment,
                          parse_vlan)
from .errors import ConfigError, one_line
from .ifname import ifname_problem

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple

# --- schema -------------------------------------------------------------------------

class _Invalid(Exception):
    """A value that does not fit; carries what was expected."""


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return value


def _integer(low: int, high: int, what: str = "an integer") -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"{what} {low}..{high}")
        return value
    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise _Invalid("one of " + ", ".join(f'"{c}"' for c in choices))
        return value
    return check


# What a configured interface name may hold beyond the kernel's rules: the hooks create
# links by these names and print them in commands to paste.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-+=,@")


def _interface(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("an interface name")
    problem = ifname_problem(value)
    if problem:
        raise _Invalid(f"an interface name ({problem})")
    if "%" in value:
        raise _Invalid("an interface name without '%' (the kernel replaces %d in the name "
                       "of a new interface with a number)")
    odd = [c for c in value if c not in _NAME_CHARACTERS and not (c.isalnum() and not c.isascii())]
    if odd:
        raise _Invalid(f"an interface name of letters, digits and _ . - + = , @ (a shell "
                       f"would misread {odd[0]!r} in the commands qemu-ifhooks prints)")
    return value


def _vlan_tags(value: Any) -> Tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_VLAN for v in value):
        raise _Invalid(f"a list of 802.1Q tags 1..{MAX_VLAN}")
    return tuple(value)


def _table(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("a table")
    return value


def _globs(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid("a list of TAP-name globs")
    return tuple(value)


def _account_names(value: Any) -> Tuple[str, ...]:
    """User or group names as useradd(8) takes them; not looked up here (parsing is
    pure, and an account may come later): `check` reports names that do not exist."""
    if not isinstance(value, list) or not all(
            isinstance(v, str) and 1 <= len(v) <= 32 and v.isascii() and v[0] != "-"
            and all(c.isalnum() or c in "_.-" for c in v.rstrip("$")) for v in value):
        raise _Invalid("a list of user or group names (letters, digits, _ . -; 1..32 "
                       "characters)")
    return tuple(value)


# Keys a segment may set for itself or inherit from [defaults], with their defaults.
INHERITED: Dict[str, Tuple[Callable[[Any], Any], Any]] = {
    "offload_check": (_choice(*OFFLOAD_MODES), "enforce"),
    "create": (_boolean, True),
    "stp": (_boolean, False),
    "forward_delay": (_integer(0, 30, "seconds"), 0),
    "allow_addressed_uplink": (_boolean, False),
    "port_security": (_choice(*PORT_SECURITY_MODES), "off"),
    "isolated": (_boolean, False),
    "guest_rx_mbit": (_integer(1, 100_000, "megabits per second"), None),
    "guest_tx_mbit": (_integer(1, 100_000, "megabits per second"), None),
}
SEGMENT_ONLY: Dict[str, Callable[[Any], Any]] = {
    "bridge": _interface,
    "uplink": _interface,
    "tag": _integer(1, MAX_VLAN),
    "mtu": _integer(68, 65535),
    "match": _globs,
    "trunk": _vlan_tags,
    "vxlan": _table,  # then vxlan.parse_vxlan checks it, key by key
    "allow_users": _account_names,
    "allow_groups": _account_names,
}
DEFAULTS_ONLY: Dict[str, Callable[[Any], Any]] = {
    "vlan": _integer(0, MAX_VLAN, "a VLAN number"),
}
# What the segments sharing one bridge must agree on: it is one kernel object.
BRIDGE_WIDE = ("uplink", "mtu", "stp", "forward_delay", "create", "allow_addressed_uplink",
               "vxlan")


ECHO_LIMIT = 60  # characters of a value echoed in an error message


def _toml_repr(value: Any) -> str:
    """`value` as TOML would write it, cut to ECHO_LIMIT characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        import json  # only on error paths; JSON's string escapes are valid TOML

        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = "[" + ", ".join(_toml_repr(v) for v in value[:ECHO_LIMIT]) + "]"
    elif isinstance(value, int) and value.bit_length() > 200:
        text = f"an integer of {len(str(abs(value)))} digits"  # 4,300 digits at most
    else:
        text = str(value)
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT - 3] + "..."


class _Parser:
    """Walks one document, raising ConfigError that names the file and the key path."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, keypath: str, message: str) -> ConfigError:
        keypath = one_line(keypath)  # keys come from the file too: any text, any length
        if len(keypath) > 2 * ECHO_LIMIT:
            keypath = keypath[:2 * ECHO_LIMIT - 3] + "..."
        return ConfigError(f"{self.path}: {keypath}: {message}")

    def table(self, value: Any, keypath: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(keypath, f"expected a table, got {_toml_repr(value)}")
        return value

    def unknown(self, table: Dict[str, Any], known: Any, keypath: str) -> None:
        for key in table:
            if key not in known:
                import difflib  # only on this error path

                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.fail(f"{keypath}.{key}" if keypath else key, f"unknown key{hint}")

    def values(self, table: Dict[str, Any], checks: Dict[str, Callable[[Any], Any]],
               keypath: str) -> Dict[str, Any]:
        out = {}
        for key, check in checks.items():
            if key in table:
                try:
                    out[key] = check(table[key])
                except _Invalid as expected:
                    raise self.fail(f"{keypath}.{key}",
                                    f"expected {expected}, got {_toml_repr(table[key])}") from None
        return out

    def parse(self, document: Dict[str, Any]) -> Config:
        self.unknown(document, ("defaults", "vlan", "port", "evpn"), "")
        defaults_table = self.table(document.get("defaults", {}), "defaults")
        self.unknown(defaults_table, list(INHERITED) + list(DEFAULTS_ONLY), "defaults")
        inherited_checks = {key: check for key, (check, _) in INHERITED.items()}
        defaults = {key: default for key, (_, default) in INHERITED.items()}
        defaults.update(self.values(defaults_table, inherited_checks, "defaults"))
        default_vlan = self.values(defaults_table, DEFAULTS_ONLY, "defaults").get("vlan")

        vlans = self.table(document.get("vlan", {}), "vlan")
        if not vlans:
            raise ConfigError(f"{self.path}: no segments: add a [vlan.N] table with a bridge")
        segments = [self.segment(key, value, defaults, inherited_checks)
                    for key, value in vlans.items()]
        ports = self.ports(self.table(document.get("port", {}), "port"))
        evpn = None
        if "evpn" in document:
            from .vxlan import parse_evpn

            evpn = parse_evpn(self.table(document["evpn"], "evpn"), "evpn", self.fail)
        return self.cross_check(Config(self.path, tuple(segments), default_vlan, ports, evpn))

    def ports(self, tables: Dict[str, Any]) -> Tuple[Any, ...]:
        """[port."NAME"] tables: a TAP name or glob each, with mac, ipv4 and ipv6."""
        if not tables:
            return ()
        from . import portconfig

        ports = []
        for pattern, value in tables.items():
            keypath = f'port."{pattern}"'
            if not pattern or len(pattern.encode()) > 64:
                raise self.fail(keypath, "expected a TAP name or glob of 1..64 bytes")
            table = self.table(value, keypath)
            self.unknown(table, portconfig.KEYS, keypath)
            fields = {}
            for key, check in portconfig.KEYS.items():
                if key in table:
                    try:
                        fields[key] = check(table[key])
                    except portconfig.Invalid as expected:
                        raise self.fail(f"{keypath}.{key}",
                                        f"expected {expected}, got {_toml_repr(table[key])}") from None
            ports.append(portconfig.Port(pattern, **fields))
        return tuple(ports)

    def segment(self, key: str, value: Any, defaults: Dict[str, Any],
                inherited_checks: Dict[str, Callable[[Any], Any]]) -> Segment:
        keypath = f"vlan.{key}"
        if parse_vlan(key) is None:
            raise self.fail(keypath, f"expected a VLAN number 0..{MAX_VLAN} as the table name")
        table = self.table(value, keypath)
        self.unknown(table, list(SEGMENT_ONLY) + list(INHERITED), keypath)
        if "bridge" not in table:
            raise self.fail(f"{keypath}.bridge", "missing: every segment names its bridge")
        fields = dict(defaults)
        fields.update(self.values(table, inherited_checks, keypath))
        fields.update(self.values(table, SEGMENT_ONLY, keypath))
        if "vxlan" in fields:
            from .vxlan import parse_vxlan

            fields["vxlan"] = parse_vxlan(table, keypath, self.fail, _interface)
        segment = Segment(vlan=int(key), **fields)
        if segment.stp and not 2 <= segment.forward_delay <= 30:
            origin = "" if "forward_delay" in table else " (inherited; set it here or in [defaults])"
            raise self.fail(f"{keypath}.forward_delay",
                            f"with stp = true the kernel needs 2..30 seconds, "
                            f"got {segment.forward_delay}{origin}")
        for index, vid in enumerate(segment.trunk):
            if vid in segment.trunk[:index]:
                raise self.fail(f"{keypath}.trunk", f"{vid} is listed twice")
            if vid == segment.tag:
                raise self.fail(f"{keypath}.trunk",
                                f"{vid} is the segment's own tag, which its TAPs get untagged")
        return segment

    def cross_check(self, config: Config) -> Config:
        """The rules between segments; the config with each segment's bridge_vids."""
        on_bridge: Dict[str, List[Segment]] = {}
        for segment in config.segments:
            earlier = on_bridge.setdefault(segment.bridge, [])
            if earlier:
                self.agree(segment, earlier)
            earlier.append(segment)
        config = config.replace(segments=tuple(
            self.bridge_style(segment, on_bridge[segment.bridge]) for segment in config.segments))
        self.check_uplinks(config.segments)
        if any(segment.vxlan for segment in config.segments):
            from .vxlan import check_vnis

            check_vnis(config.segments, self.fail)
        if config.default_vlan is not None and config.segment(config.default_vlan) is None:
            raise self.fail("defaults.vlan", f"no segment vlan.{config.default_vlan} is defined")
        return config

    def agree(self, segment: Segment, earlier: List[Segment]) -> None:
        """Segments sharing a bridge describe one kernel object."""
        first = earlier[0]

        def shown(value: Any) -> str:
            return _toml_repr(value) if value is not None else "unset"
        for field in BRIDGE_WIDE:
            mine, theirs = getattr(segment, field), getattr(first, field)
            if mine != theirs:
                raise self.fail(
                    f"{segment.key}.{field}",
                    f"bridge {segment.bridge} is shared with {first.key}, which has "
                    f"{field} = {shown(theirs)}; segments on one bridge must agree, "
                    f"got {shown(mine)}")
        if (segment.tag is None) != (first.tag is None):
            raise self.fail(
                f"{segment.key}.tag",
                f"bridge {segment.bridge} is shared with {first.key}, which has "
                f"tag = {shown(first.tag)}; the segments of one bridge are all tagged "
                f"(a VLAN-aware bridge) or all untagged, got {shown(segment.tag)}")
        for other in earlier:
            if segment.tag is not None and other.tag == segment.tag:
                raise self.fail(f"{segment.key}.tag",
                                f"{other.key} on bridge {segment.bridge} has tag = "
                                f"{segment.tag} too; the segments of a VLAN-aware bridge "
                                f"need tags of their own")

    def bridge_style(self, segment: Segment, on_bridge: List[Segment]) -> Segment:
        """A bridge shared by tagged segments is VLAN-aware; a tag on a bridge of its own
        is the classic bridge per VLAN, whose uplink port is <uplink>.<tag>."""
        if segment.tag is not None and len(on_bridge) > 1:
            vids = {s.tag for s in on_bridge if s.tag is not None}
            vids.update(vid for s in on_bridge for vid in s.trunk)
            return segment.replace(bridge_vids=tuple(sorted(vids)))
        if segment.trunk:
            what = ("a bridge per VLAN (its only segment has a tag)" if segment.tag is not None
                    else "not VLAN-aware (its segments have no tag)")
            raise self.fail(f"{segment.key}.trunk",
                            f"only the segments of a VLAN-aware bridge (one that several "
                            f"tagged segments share) can have trunk tags; {segment.bridge} "
                            f"is {what}")
        if segment.tag is not None:
            if segment.uplink is None:
                raise self.fail(f"{segment.key}.uplink",
                                f"missing: tag = {segment.tag} on a bridge of its own makes "
                                f"{segment.bridge}'s uplink port <uplink>.{segment.tag}; set "
                                f"the uplink, or share {segment.bridge} with other tagged "
                                f"segments (a VLAN-aware bridge)")
            problem = ifname_problem(segment.uplink_port or "")
            if problem:
                raise self.fail(f"{segment.key}.tag",
                                f"the uplink port {segment.uplink_port} (<uplink>.<tag>) is "
                                f"not a valid interface name ({problem}); use a shorter "
                                f"uplink name")
        return segment

    def check_uplinks(self, segments: Tuple[Segment, ...]) -> None:
        """One port joins one bridge; a VLAN tagged on a VLAN-aware bridge's uplink cannot
        also be a classic subinterface of that uplink."""
        bridges = {s.bridge for s in segments}
        port_owner: Dict[str, Segment] = {}
        for index, segment in enumerate(segments):
            if segment.uplink is None:
                continue
            if segment.uplink in bridges:
                raise self.fail(f"{segment.key}.uplink",
                                f"{segment.uplink} is also configured as a bridge")
            port = segment.uplink_port  # the uplink itself unless classic
            assert port is not None
            where = f"{segment.key}.tag" if segment.classic else f"{segment.key}.uplink"
            if port in bridges:
                raise self.fail(where, f"{port} is also configured as a bridge")
            owner = port_owner.setdefault(port, segment)
            if owner.bridge != segment.bridge:
                raise self.fail(where, f"{port} is already the uplink of {owner.bridge} "
                                       f"({owner.key}); one port can join one bridge")
            for other in segments[:index]:
                if other.uplink == segment.uplink:
                    self.check_vlan_claims(segment, other)

    def check_vlan_claims(self, segment: Segment, earlier: Segment) -> None:
        """The 8021q driver hands a frame tagged N to <uplink>.N before any bridge sees
        it: a VLAN-aware bridge on the same uplink would never get that VLAN."""
        if segment.classic and earlier.vlan_aware:
            classic, aware, claimed = segment, earlier, (earlier.tag,) + earlier.trunk
            keypath = f"{segment.key}.tag"
        elif segment.vlan_aware and earlier.classic:
            classic, aware, claimed = earlier, segment, (segment.tag,) + segment.trunk
            keypath = f"{segment.key}.{'tag' if segment.tag == earlier.tag else 'trunk'}"
        else:
            return
        vid = classic.tag
        if vid not in claimed:
            return
        uplink = classic.uplink
        raise self.fail(keypath,
                        f"VLAN {vid} on {uplink} is wanted twice: by the VLAN-aware bridge "
                        f"{aware.bridge} ({aware.key}) and by {uplink}.{vid}, the uplink port "
                        f"of {classic.bridge} ({classic.key}); {uplink}.{vid} would take every "
                        f"frame tagged {vid} from {uplink}, so traffic for VLAN {vid} would "
                        f"never reach the TAPs on {aware.bridge}")


def parse_config(document: Dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise ConfigError naming file and key path."""
    return _Parser(path).parse(document)


# Bounds on what reaches the TOML parser, which QEMU waits for with no timeout: its time
# and memory grow with the square of a dotted key's depth (a 200 KB table header takes
# seconds), and deep nesting exhausts the stack. A long line is what every such input
# needs (keys and inline tables cannot span lines); nested arrays can, and are caught.
# MAX_CONFIG_BYTES (configfile.py) bounds the whole file.
MAX_LINE_BYTES = 4096


def parse_toml(path: str, data: bytes) -> Dict[str, Any]:
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config "
                          f"this large is not one qemu-ifhooks wrote or expects")
    for number, line in enumerate(data.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            raise ConfigError(f"{path}: line {number} is longer than {MAX_LINE_BYTES} bytes; "
                              f"split it (arrays can span lines)")
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than int() converts
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
