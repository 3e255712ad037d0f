"""The admin side of bridges: `up` builds them before the first guest starts (and puts
back the TAPs of running VMs, after a bridge was rebuilt), `down` removes only what the
config declares."""

from __future__ import annotations

from typing import Callable, List, Sequence

from .actions import ensure_bridge, teardown
from .apply import Executor
from .configmodel import Config, Segment
from .errors import UsageError, run_guarded
from .lock import BridgeLock
from .log import LOG_INFO, emit, warn
from .netlink import Netlink
from .reattach import reattach


def select_bridges(config: Config, vlans: Sequence[int]) -> List[Segment]:
    """One segment per bridge, for the given VLANs (all when none are given)."""
    for vlan in vlans:
        if config.segment(vlan) is None:
            raise UsageError(f"no segment vlan.{vlan} in {config.path}")
    chosen, seen = [], set()
    for segment in config.segments:
        if (not vlans or segment.vlan in vlans) and segment.bridge not in seen:
            seen.add(segment.bridge)
            chosen.append(segment)
    return chosen


def _tracer(verbose: bool) -> Callable[[str], None]:
    def trace(command: str) -> None:
        emit(LOG_INFO, f"admin: {command}")
        if verbose:
            print(f"  {command}")
    return trace


def _each_bridge(config: Config, vlans: Sequence[int], verb: str,
                 action: Callable[[Netlink, Segment], str]) -> int:
    """Run `action` per bridge; report each on one line; the first failure's status."""
    status = 0
    with Netlink() as nl:
        for segment in select_bridges(config, vlans):
            def one(segment=segment):
                print(f"{segment.key}: {segment.bridge}: {action(nl, segment)}")
            result = run_guarded(f"{verb}: {segment.key}: {segment.bridge}", one)
            status = status or result
    return status


def sweep(trace: Callable[[str], None]) -> int:
    """Remove the rules and ifb devices of TAPs that are gone (VMs killed without
    their downscript); say what went."""
    from .guards import leftovers

    def remove() -> None:
        with Netlink() as nl:
            for op in leftovers(nl):
                Executor(nl, trace=trace).apply([op])
                print(f"swept {op.ifname}: its TAP is gone")
    return run_guarded("sweep", remove)


def up(config: Config, vlans: Sequence[int], verbose: bool) -> int:
    trace = _tracer(verbose)
    swept = sweep(trace)

    def build(nl: Netlink, segment: Segment) -> str:
        done: List[str] = []

        def record(command: str) -> None:
            done.append(command)
            trace(command)
        def warning(message: str) -> None:
            warn(f"up: {segment.key}", message)
        with BridgeLock(segment.bridge) as lock, Executor(nl, trace=record) as run:
            ensure_bridge(nl, segment, lock, run, warning, create=True)
        uplink = f" with uplink {segment.uplink_port}" if segment.uplink_port else ""
        result = f"{'set up' if done else 'already up'}{uplink}"
        # After the lock is released: each re-plug is an ifup, which takes it itself.
        plugged, failed = reattach(nl, config, segment.bridge, trace, warning)
        if plugged:
            result += f"; re-plugged {', '.join(plugged)}"
        if failed:
            tap, error = failed[0]
            print(f"{segment.key}: {segment.bridge}: {result}")
            raise type(error)(f"could not re-plug {tap}: {error}")
        return result

    return _each_bridge(config, vlans, "up", build) or swept


def down(config: Config, vlans: Sequence[int], force: bool, verbose: bool) -> int:
    trace = _tracer(verbose)

    def remove(nl: Netlink, segment: Segment) -> str:
        notes: List[str] = []
        done = "removed" if teardown(nl, segment, force, trace, notes.append) else "absent"
        return "; ".join([done] + notes)

    status = _each_bridge(config, vlans, "down", remove)
    return status or sweep(trace)

