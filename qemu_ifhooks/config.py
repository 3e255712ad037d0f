"""The TOML map of bridge per QEMU VLAN: schema, validation and loading.

`parse_config` is pure (a parsed TOML document in, frozen dataclasses out); `load_config`
is the thin edge that finds, checks and reads the file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ConfigError, PermissionDenied
from .ifname import ifname_problem

DEFAULT_PATH = "/etc/qemu-ifhooks/qemu-ifhooks.toml"
ENV_PATH = "QEMU_IFHOOKS_CONFIG"

OFFLOAD_MODES = ("enforce", "warn", "off")
MAX_VLAN = 4094


def parse_vlan(text: str) -> Optional[int]:
    """A QEMU VLAN number written plainly (ASCII digits, no leading zeros), or None."""
    if text.isascii() and text.isdigit() and str(int(text)) == text and int(text) <= MAX_VLAN:
        return int(text)
    return None


@dataclass(frozen=True)
class Segment:
    """One QEMU VLAN: the bridge its TAPs join and how that bridge is built."""

    vlan: int
    bridge: str
    uplink: Optional[str] = None
    tag: Optional[int] = None
    mtu: Optional[int] = None
    match: Tuple[str, ...] = ()
    offload_check: str = "enforce"
    create: bool = True
    stp: bool = False
    forward_delay: int = 0
    allow_addressed_uplink: bool = False

    @property
    def key(self) -> str:
        return f"vlan.{self.vlan}"


@dataclass(frozen=True)
class Config:
    path: str
    segments: Tuple[Segment, ...]  # in file order
    default_vlan: Optional[int] = None

    def segment(self, vlan: int) -> Optional[Segment]:
        for segment in self.segments:
            if segment.vlan == vlan:
                return segment
        return None

    def segments_on(self, bridge: str) -> List[Segment]:
        return [s for s in self.segments if s.bridge == bridge]

    def bridges(self) -> List[Segment]:
        """The first segment of each bridge, in file order."""
        seen: Dict[str, Segment] = {}
        for segment in self.segments:
            seen.setdefault(segment.bridge, segment)
        return list(seen.values())


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


def _interface(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("an interface name")
    problem = ifname_problem(value)
    if problem:
        raise _Invalid(f"an interface name ({problem})")
    return value


def _globs(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid("a list of TAP-name globs")
    return tuple(value)


# Keys a segment may set for itself or inherit from [defaults], with their defaults.
INHERITED: Dict[str, Tuple[Callable[[Any], Any], Any]] = {
    "offload_check": (_choice(*OFFLOAD_MODES), "enforce"),
    "create": (_boolean, True),
    "stp": (_boolean, False),
    "forward_delay": (_integer(0, 30, "seconds"), 0),
    "allow_addressed_uplink": (_boolean, False),
}
SEGMENT_ONLY: Dict[str, Callable[[Any], Any]] = {
    "bridge": _interface,
    "uplink": _interface,
    "tag": _integer(1, MAX_VLAN),
    "mtu": _integer(68, 65535),
    "match": _globs,
}
DEFAULTS_ONLY: Dict[str, Callable[[Any], Any]] = {
    "vlan": _integer(0, MAX_VLAN, "a VLAN number"),
}
# What the segments sharing one bridge must agree on: it is one kernel object.
BRIDGE_WIDE = ("uplink", "mtu", "stp", "forward_delay", "create", "allow_addressed_uplink")


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json  # only on error paths; JSON's string escapes are valid TOML

        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_repr(v) for v in value) + "]"
    return str(value)


class _Parser:
    """Walks one document, raising ConfigError that names the file and the key path."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, keypath: str, message: str) -> ConfigError:
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
        self.unknown(document, ("defaults", "vlan"), "")
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
        config = Config(self.path, tuple(segments), default_vlan)
        self.cross_check(config)
        return config

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
        segment = Segment(vlan=int(key), **fields)
        if segment.stp and not 2 <= segment.forward_delay <= 30:
            origin = "" if "forward_delay" in table else " (inherited; set it here or in [defaults])"
            raise self.fail(f"{keypath}.forward_delay",
                            f"with stp = true the kernel needs 2..30 seconds, "
                            f"got {segment.forward_delay}{origin}")
        return segment

    def cross_check(self, config: Config) -> None:
        first_on_bridge: Dict[str, Segment] = {}
        uplink_owner: Dict[Tuple[str, Optional[int]], Segment] = {}
        bridges = {s.bridge for s in config.segments}
        for segment in config.segments:
            first = first_on_bridge.setdefault(segment.bridge, segment)
            for field in BRIDGE_WIDE:
                mine, theirs = getattr(segment, field), getattr(first, field)
                if mine != theirs:
                    raise self.fail(
                        f"{segment.key}.{field}",
                        f"bridge {segment.bridge} is shared with {first.key}, which has "
                        f"{field} = {_toml_repr(theirs) if theirs is not None else 'unset'}; "
                        f"segments on one bridge must agree, got "
                        f"{_toml_repr(mine) if mine is not None else 'unset'}")
            if segment.uplink is None:
                continue
            if segment.uplink in bridges:
                raise self.fail(f"{segment.key}.uplink",
                                f"{segment.uplink} is also configured as a bridge")
            owner = uplink_owner.setdefault((segment.uplink, segment.tag), segment)
            if owner.bridge != segment.bridge:
                raise self.fail(f"{segment.key}.uplink",
                                f"{segment.uplink} is already the uplink of {owner.bridge} "
                                f"({owner.key}); one port can join one bridge")
        if config.default_vlan is not None and config.segment(config.default_vlan) is None:
            raise self.fail("defaults.vlan", f"no segment vlan.{config.default_vlan} is defined")


def parse_config(document: Dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise ConfigError naming file and key path."""
    return _Parser(path).parse(document)


# --- the file ---------------------------------------------------------------------

def config_path(explicit: Optional[str] = None) -> str:
    return explicit or os.environ.get(ENV_PATH) or DEFAULT_PATH


def check_secure(path: str, st: os.stat_result) -> None:
    """Refuse a config that someone other than root could have written (like sshd's
    StrictModes): it decides which interfaces a root hook enslaves."""
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if st.st_uid not in (0, os.geteuid()):
        raise PermissionDenied(f"{path}: insecure: owned by uid {st.st_uid}, not root; "
                               f"run 'chown root: {path}'")
    if st.st_mode & 0o022:
        raise PermissionDenied(f"{path}: insecure: writable by group or others "
                               f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod go-w {path}'")


def read_toml(path: str) -> Dict[str, Any]:
    """Open, check and parse the file (the checks apply to the very file that is read)."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and QEMU waits
        # for the hook with no timeout. It changes nothing for a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            check_secure(path, os.fstat(fd))
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; write one (see qemu-ifhooks.toml(5)) "
                          f"or point {ENV_PATH} at it") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
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


def load_config(explicit: Optional[str] = None) -> Config:
    path = config_path(explicit)
    return parse_config(read_toml(path), path)
