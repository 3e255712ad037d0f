"""What a hook does, from the name QEMU runs it by (the basename of argv[0]).

ifup-vlan<N> / ifdown-vlan<N>   segment vlan.N (always valid)
ifup-<bridge> / ifdown-<bridge> the one segment whose bridge is <bridge>
anything else                   action from "down"/"up" in the name; segment from the
                                `match` globs, else [defaults] vlan
"""

from __future__ import annotations

from .configmodel import parse_vlan
from .errors import UsageError
from .record import Record

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from .configmodel import Config, Segment

IFUP, IFDOWN = "ifup", "ifdown"


class HookName(Record):
    __slots__ = (
        "action",  # IFUP or IFDOWN
        "vlan",
        "bridge",  # neither vlan nor bridge: a generic name
    )
    _defaults = {"vlan": None, "bridge": None}

    @property
    def generic(self) -> bool:
        return self.vlan is None and self.bridge is None


def parse_hook_name(name: str) -> HookName:
    for action in (IFUP, IFDOWN):
        prefix = action + "-"
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix):]
            vlan = parse_vlan(rest[4:]) if rest.startswith("vlan") else None
            if vlan is not None:
                return HookName(action, vlan=vlan)
            return HookName(action, bridge=rest)
    if "down" in name:
        return HookName(IFDOWN)
    if "up" in name:
        return HookName(IFUP)
    raise UsageError(f"cannot tell ifup from ifdown by the name {name!r}; install the hook as "
                     f"ifup-<bridge>/ifdown-<bridge> (qemu-ifhooks install) or use "
                     f"'qemu-ifhooks hook {{ifup,ifdown}} --vlan N TAP'")


def resolve_segment(config: Config, hook: HookName, tap: str) -> Segment:
    if hook.vlan is not None:
        segment = config.segment(hook.vlan)
        if segment is None:
            raise UsageError(f"no segment vlan.{hook.vlan} in {config.path}")
        return segment
    if hook.bridge is not None:
        segments = config.segments_on(hook.bridge)
        if not segments:
            raise UsageError(f"no segment uses bridge {hook.bridge} in {config.path}")
        if len(segments) > 1:
            keys = " and ".join(s.key for s in segments)
            raise UsageError(f"bridge {hook.bridge} is used by {keys}; "
                             f"name the hook {hook.action}-vlan<N> instead")
        return segments[0]
    return _match_generic(config, tap)


def _match_generic(config: Config, tap: str) -> Segment:
    if any(s.match for s in config.segments):
        from fnmatch import fnmatchcase  # only generic names need globs

        for segment in config.segments:
            if any(fnmatchcase(tap, glob) for glob in segment.match):
                return segment
    if config.default_vlan is not None:
        segment = config.segment(config.default_vlan)
        assert segment is not None  # parse_config checked it
        return segment
    raise UsageError(f"no segment's match globs fit {tap} and [defaults] vlan is not set "
                     f"in {config.path}")
