"""The facts `qemu-ifhooks check` evaluates, read from the network namespace it runs in:
links and offloads (pyroute2), /proc/sys/net/bridge, the nftables ruleset (and legacy
iptables when its tables are in use), /dev/net/tun, the hook entries, kernel support.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from .configfile import config_path, read_config
from .doctor import Facts, HookDir, HookEntry
from .errors import HookError, PermissionDenied
from .firewall import IPV4, IPV6, Drop, iptables_drops, nft_drops
from .inventory import Inventory, read_features, read_inventory

BRIDGE_SYSCTLS = "/proc/sys/net/bridge"
COMMAND_TIMEOUT = 15  # seconds


def load(explicit: Optional[str]) -> dict:
    """Config, or why not, as Facts fields."""
    path = config_path(explicit)
    fields: dict = {"config_path": path}
    try:
        fields["config"] = read_config(path)
        st = os.stat(path)
        fields["config_owner"] = (st.st_uid, stat.S_IMODE(st.st_mode))
    except HookError as error:
        fields["config_error"] = str(error)
        fields["config_insecure"] = isinstance(error, PermissionDenied)
    return fields


def bridge_nf() -> Optional[Dict[str, int]]:
    if not os.path.isdir(BRIDGE_SYSCTLS):
        return None
    values = {}
    for key in ("iptables", "ip6tables"):
        try:
            with open(f"{BRIDGE_SYSCTLS}/bridge-nf-call-{key}") as f:
                values[key] = int(f.read().strip())
        except (OSError, ValueError):
            values[key] = 0
    return values


def _run(argv: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
    """(stdout, None) or (None, why it failed)."""
    try:
        done = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, lines[0] if lines else f"exit status {done.returncode}"
    return done.stdout, None


def _legacy_tables(name: str) -> bool:
    try:
        with open(f"/proc/net/{name}") as f:
            return "filter" in f.read().split()
    except OSError:
        return False


def firewall() -> Tuple[List[Drop], List[str]]:
    """Drops on the forward path, and what could not be read. nftables shows its own
    rules and those of iptables-nft; legacy iptables is read only when its filter table
    exists in this namespace."""
    drops: List[Drop] = []
    problems: List[str] = []
    nft = shutil.which("nft")
    if nft is None:
        problems.append("cannot read the nftables ruleset: nft is not installed "
                        "(apt-get install nftables)")
    else:
        out, why = _run([nft, "-j", "list", "ruleset"])
        if out is None:
            problems.append(f"cannot read the nftables ruleset: {why}")
        else:
            try:
                drops += nft_drops(out)
            except (ValueError, KeyError, AttributeError) as e:
                problems.append(f"cannot parse 'nft -j list ruleset': {e}")
    for table, command, path in (("ip_tables_names", "iptables-legacy", IPV4),
                                 ("ip6_tables_names", "ip6tables-legacy", IPV6)):
        if not _legacy_tables(table):
            continue
        program = shutil.which(command)
        if program is None:
            problems.append(f"legacy {table.split('_')[0]} tables are in use but {command} "
                            f"is not installed (apt-get install iptables)")
            continue
        out, why = _run([program, "-S", "FORWARD"])
        if out is None:
            problems.append(f"cannot read {command} FORWARD: {why}")
        else:
            drops += iptables_drops(out, path, command)
    return drops, problems


def tun_problem(path: str = "/dev/net/tun") -> Optional[str]:
    try:
        st = os.stat(path)
    except OSError as e:
        return f"missing ({e.strerror}): QEMU cannot create TAPs"
    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (10, 200):
        return "not the TUN/TAP character device (10, 200)"
    return None


def config_problem(path: str) -> Optional[str]:
    """Why the hooks could not use the config at `path` (as they would read it)."""
    try:
        read_config(path)
    except HookError as error:
        return str(error)
    return None


def hook_dirs(config, directories: Sequence[str]) -> Tuple[HookDir, ...]:
    from .install import describe, entry_names, is_ours, launcher_config, read_launcher

    out = []
    names = [name for pair in entry_names(config) for name in pair] if config else []
    for directory in directories:
        if not os.path.isdir(directory):
            out.append(HookDir(directory, False))
            continue
        entries = []
        for name in names:
            path = os.path.join(directory, name)
            exists = os.path.lexists(path)
            target = os.path.realpath(path) if os.path.exists(path) else None
            started = read_launcher(path) if target else None
            reads = launcher_config(path) if started else None
            entries.append(HookEntry(name, path, exists,
                                     exists and target is not None and os.path.isfile(target)
                                     and os.access(path, os.X_OK),
                                     exists and is_ours(path),
                                     describe(*started) if started else target,
                                     reads, config_problem(reads) if reads else None))
        out.append(HookDir(directory, True, tuple(entries)))
    return tuple(out)


def this_hook_program() -> Optional[str]:
    """How this installation's entries start the hook (as HookEntry.target has it)."""
    from .install import describe, this_installation

    try:
        return describe(*this_installation())
    except HookError:
        return None


def vlan_support() -> Optional[bool]:
    """802.1Q: registered in this kernel (built in or loaded), or loadable."""
    if os.path.isdir("/proc/net/vlan") or os.path.isdir("/sys/module/8021q"):
        return True
    modules = f"/lib/modules/{platform.release()}"
    if not os.path.isdir(modules):
        return False
    for _, _, files in os.walk(os.path.join(modules, "kernel", "net", "8021q")):
        if any(f.startswith("8021q.ko") for f in files):
            return True
    return False


def kernel_config(paths: Sequence[str] = ()) -> Optional[Dict[str, str]]:
    """The running kernel's build options that are set ({"CONFIG_BRIDGE": "y", ...}),
    from /proc/config.gz or /boot/config-RELEASE; None when neither is there."""
    import gzip

    for path in paths or ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
                pairs = (line.strip().partition("=") for line in f)
                return {key: value for key, _, value in pairs
                        if key.startswith("CONFIG_") and value}
        except (OSError, EOFError):
            continue
    return None


def vlan_filtering_support(inventory: Inventory,
                           config: Optional[Dict[str, str]] = None) -> Optional[bool]:
    """From an existing bridge (the kernel reports its default PVID only when built with
    CONFIG_BRIDGE_VLAN_FILTERING), else from the kernel's build options."""
    for link in inventory.links.values():
        if link.bridge is not None:
            return link.bridge.vlan_default_pvid is not None
    if config is None:
        return None
    return config.get("CONFIG_BRIDGE_VLAN_FILTERING") == "y"


def detached_of(config, inventory: Inventory) -> Tuple[Tuple[str, str, str, str], ...]:
    """The recorded TAPs of running VMs, of the config's segments, on no bridge now."""
    from .reattach import read_attachments
    from .status import holder_text, detached_taps, tap_holders

    records = [r for r in read_attachments() if config.segment(r.vlan) is not None]
    if not records:
        return ()
    return tuple((r.tap, r.bridge, r.fix, holder_text(holders))
                 for r, holders in detached_taps(inventory, tap_holders(), records))


def broker_socket(path: Optional[str] = None) -> Tuple[str, str]:
    """(path, state) of the broker's socket: listening, absent, stale, or why not."""
    import socket

    from .brokerproto import socket_path

    path = path or socket_path()
    if not os.path.lexists(path):
        return path, "absent"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Connect and hang up: the broker logs it as a refused, incomplete request.
        probe.settimeout(2)
        probe.connect(path)
        return path, "listening"
    except (ConnectionRefusedError, FileNotFoundError):
        return path, "stale"
    except OSError as error:
        return path, f"cannot connect: {error.strerror}"
    finally:
        probe.close()


def unknown_accounts(config) -> Tuple[Tuple[str, str, str], ...]:
    import grp
    import pwd

    found = []
    for segment in config.segments:
        for kind, names, lookup in (("user", segment.allow_users, pwd.getpwnam),
                                    ("group", segment.allow_groups, grp.getgrnam)):
            for name in names:
                try:
                    lookup(name)
                except KeyError:
                    found.append((segment.key, kind, name))
    return tuple(found)


def gather(explicit_config: Optional[str], directories: Sequence[str]) -> Facts:
    fields = load(explicit_config)
    config = fields.get("config")
    inventory = read_inventory()
    devices: List[str] = []
    for segment in (config.bridges() if config else ()):
        # The bridge's uplink port and what it sits on; a classic segment's uplink
        # while its subinterface does not exist yet.
        port = inventory.get(segment.uplink_port) or inventory.get(segment.uplink)
        if port is not None:
            devices.append(port.name)
            if port.lower and port.lower in inventory.links:
                devices.append(port.lower)
    features, feature_errors = read_features(devices)
    detached = detached_of(config, inventory) if config else ()
    drops, problems = firewall()
    from .guards import guarded_taps, shaped_taps
    from .linkbuild import list_links
    from .netlink import Netlink

    with Netlink() as nl:
        shaped = tuple(shaped_taps(list_links(nl)))
    evpn = None
    if config is not None:
        from .frr import evpn_segments, read_evpn_state

        if evpn_segments(config):
            evpn = read_evpn_state(config.evpn.pathspace if config.evpn else None)
    return Facts(**fields, inventory=inventory, features=features,
                 guarded=tuple(guarded_taps()), shaped=shaped,
                 feature_errors=feature_errors, bridge_nf=bridge_nf(), drops=tuple(drops),
                 firewall_problems=tuple(problems), tun_problem=tun_problem(),
                 hook_program=this_hook_program(), hook_dirs=hook_dirs(config, directories),
                 vlan_support=vlan_support(), detached=detached,
                 broker_socket=broker_socket(),
                 unknown_accounts=unknown_accounts(config) if config else (),
                 vlan_filtering_support=vlan_filtering_support(inventory, kernel_config()),
                 evpn=evpn)


def run_check(explicit_config: Optional[str], directories: Sequence[str], as_json: bool) -> int:
    from .doctor import evaluate, failed, render_json, render_text
    from .errors import ExitStatus

    findings = evaluate(gather(explicit_config, directories))
    print(render_json(findings) if as_json else render_text(findings), end="")
    return ExitStatus.FAILED if failed(findings) else ExitStatus.OK
