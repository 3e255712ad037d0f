"""`qemu-ifhooks plan`: what a hook would do, as `ip` commands, changing nothing.

The same observation and planners as the hook (actions.observe, plan_bridge,
plan_attach, plan_detach); a bridge that does not exist yet is planned against as the
hook would create it, a TAP that does not exist yet as QEMU creates it. No lock is taken.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from .actions import (check_uplink_offloads, guest_rules, leftovers, machine_id, observe,
                      port_rules_exist, shaping_exists, tap_vlans)
from .buildplan import predicted_bridge
from .configmodel import Config, Segment
from .errors import UsageError
from .hookname import IFUP, HookName, parse_hook_name, resolve_segment
from .ifname import ifname_problem
from .netlink import Link, Netlink
from .plan import Plan, plan_attach, plan_detach, require_tap
from .portconfig import Port

FRESH_TAP_MTU = 1500


def fresh_tap(name: str) -> Link:
    """A TAP as QEMU creates it before running the upscript: down, MTU 1500, no master."""
    return Link(index=0, name=name, kind="tun", tun_type="tap", flags=0, mtu=FRESH_TAP_MTU,
                master=0, address=None, operstate=0)


def hook_for(action: str, vlan: Optional[int], bridge: Optional[str],
             hook: Optional[str]) -> HookName:
    if hook is None:
        return HookName(action, vlan=vlan, bridge=bridge)
    name = parse_hook_name(hook)
    if name.action != action:
        raise UsageError(f"hook {hook} does {name.action}, not {action}")
    return name


def plan_ifup(nl: Netlink, segment: Segment, tap: str, notes: List[str],
              ports: Sequence[Port] = ()) -> Plan:
    link = nl.get_link(tap)
    if link is None:
        notes.append(f"{tap} does not exist yet: planned as QEMU creates it "
                     f"(a TAP, down, MTU {FRESH_TAP_MTU})")
        link = fresh_tap(tap)
    require_tap(link)
    scene = observe(nl, segment)
    check_uplink_offloads(segment, scene, lambda message: notes.append(f"warning: {message}"))
    build = scene.plan(segment, machine_id())
    bridge = scene.bridge
    if bridge is None:
        notes.append(f"{segment.bridge} does not exist yet: the hook creates it")
        # A new subinterface has its parent's MTU.
        bridge = predicted_bridge(build, scene.vlan_port or scene.uplink)
    rules = guest_rules(segment, ports, tap)
    shaped = bool(segment.guest_rx_mbit or segment.guest_tx_mbit)
    attach = plan_attach(segment, link, bridge, tap_vlans(nl, segment, link, bridge),
                         rules=rules, has_rules=not rules and port_rules_exist(tap),
                         has_shaping=not shaped and shaping_exists(nl, tap))
    return Plan(build.ops + attach.ops, build.notes + attach.notes)


def plan_ifdown(nl: Netlink, segment: Segment, tap: str) -> Plan:
    link = nl.get_link(tap)
    return plan_detach(segment, link, nl.get_link(segment.bridge) if link else None,
                       leftovers(nl, tap))


def dry_run(config: Config, action: str, tap: str, hook: HookName) -> List[str]:
    problem = ifname_problem(tap)
    if problem:
        raise UsageError(f"invalid interface name {tap!r}: {problem}")
    segment = resolve_segment(config, hook, tap)
    notes: List[str] = []
    with Netlink() as nl:
        plan = plan_ifup(nl, segment, tap, notes, config.ports) if action == IFUP else \
            plan_ifdown(nl, segment, tap)
    lines = [f"# {action} {tap}: {segment.key}, bridge {segment.bridge}"]
    lines += [f"# {note}" for note in notes + list(plan.notes)]
    lines += [op.command() for op in plan.ops]
    if not plan.ops:
        lines.append("# nothing to do")
    return lines
