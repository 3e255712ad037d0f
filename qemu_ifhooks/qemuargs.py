"""Modern QEMU network arguments: `qemu-ifhooks qemu-args` and the helpers that
`translate` shares with it (QemuOpts text, NIC models, stable MACs and TAP names).

Pure: strings and values in, argument lists out.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from .errors import UsageError
from .ifname import IFNAMSIZ, ifname_problem
from .qemuopts import join_opts

DEFAULT_MODEL = "virtio-net-pci"
# `-net nic,model=` names that are not device names (QEMU maps them itself).
MODEL_ALIASES = {"virtio": "virtio-net-pci"}
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_QEMU_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")  # QEMU's id_wellformed()
_TAP_CHARS = re.compile(r"[^A-Za-z0-9_.-]")

Option = Tuple[str, Optional[str]]  # (key, value); value None: a bare flag such as "vhost"



def netdev_arg(kind: str, ident: str, options: Iterable[Option] = ()) -> List[str]:
    return ["-netdev", join_opts([(kind, None), ("id", ident), *options])]


def device_arg(model: str, netdev: str, mac: Optional[str] = None,
               options: Iterable[Option] = ()) -> List[str]:
    opts: List[Option] = [(model, None), ("netdev", netdev)]
    if mac is not None:
        opts.append(("mac", mac))
    return ["-device", join_opts([*opts, *options])]


def hubport_arg(ident: str, hub: int, netdev: Optional[str] = None) -> List[str]:
    options: List[Option] = [("hubid", str(hub))]
    if netdev is not None:
        options.append(("netdev", netdev))
    return netdev_arg("hubport", ident, options)


def format_args(argv: Sequence[str]) -> str:
    """One option (with its value) per line, each word quoted for a POSIX shell only where
    it needs it, so that `qemu ... $(qemu-ifhooks qemu-args ...)` works for plain values
    and `eval` always does."""
    lines: List[str] = []
    i = 0
    while i < len(argv):
        words = [argv[i]]
        if argv[i].startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            words.append(argv[i + 1])
            i += 1
        lines.append(" ".join(shlex.quote(w) for w in words))
        i += 1
    return "\n".join(lines) + ("\n" if lines else "")


# --- names --------------------------------------------------------------------------------

def device_model(model: str) -> str:
    """A NIC model as a -device name ("virtio" is QEMU's own alias for virtio-net-pci)."""
    if model in ("help", "?"):
        raise UsageError("list the NIC models with 'qemu-system-x86_64 -device help'")
    if not _DEVICE_NAME.match(model):
        raise UsageError(f"invalid NIC model {model!r}: expected a QEMU device name such as "
                         f"virtio-net-pci or e1000")
    return MODEL_ALIASES.get(model, model)


def is_qemu_id(text: str) -> bool:
    return bool(_QEMU_ID.match(text))


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(("qemu-ifhooks",) + parts).encode("utf-8",
                                                                      "surrogateescape")).digest()


def vm_mac(vm: str, vlan: int) -> str:
    """A stable locally administered unicast MAC for the VM's NIC on `vlan`."""
    octets = bytearray(_digest("mac", vm, str(vlan))[:6])
    octets[0] = (octets[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in octets)


def vm_tap_name(vm: str, vlan: int) -> str:
    """`<vm>-<vlan>` when that is a valid interface name, else the VM name cut short (and
    stripped of characters that do not belong in one) with a hash of the full name, so
    that distinct VMs keep distinct TAPs: always 1..15 bytes."""
    suffix = f"-{vlan}"
    plain = f"{vm}{suffix}"
    if _TAP_CHARS.sub("", vm) == vm and ifname_problem(plain) is None:
        return plain
    tag = _digest("tap", vm).hex()[:4]
    room = IFNAMSIZ - 1 - len(suffix) - len(tag) - 1
    stem = _TAP_CHARS.sub("", vm)[:room] or "vm"
    return f"{stem}-{tag}{suffix}"


# --- qemu-args ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Nic:
    vlan: int
    ifup: str  # script paths
    ifdown: str


def nic_args(nics: Sequence[Nic], vm: Optional[str], model: str = DEFAULT_MODEL) -> List[str]:
    """-netdev tap + -device per NIC; without a VM name, QEMU picks TAP names and MACs."""
    model = device_model(model)
    seen = set()
    argv: List[str] = []
    for nic in nics:
        if nic.vlan in seen:
            raise UsageError(f"VLAN {nic.vlan} given twice: one NIC per VLAN")
        seen.add(nic.vlan)
        ident = f"net{nic.vlan}"
        options: List[Option] = []
        if vm is not None:
            options.append(("ifname", vm_tap_name(vm, nic.vlan)))
        options += [("script", nic.ifup), ("downscript", nic.ifdown)]
        argv += netdev_arg("tap", ident, options)
        argv += device_arg(model, ident, vm_mac(vm, nic.vlan) if vm is not None else None)
    return argv


def qemu_args(config, vlans: Sequence[int], vm: Optional[str], model: str,
              hook_dir: str) -> List[str]:
    """The arguments for one NIC per VLAN, each running the hook entries that
    `qemu-ifhooks install --dir hook_dir` writes for its segment."""
    if vm is not None and not vm:
        raise UsageError("--vm: expected a VM name, got an empty string")
    return nic_args(hook_nics(config, vlans, hook_dir), vm, model)


def hook_nics(config, vlans: Sequence[int], hook_dir: str) -> List[Nic]:
    """One NIC per VLAN on the entries `install --dir hook_dir` writes (qemu-args,
    libvirt-xml)."""
    import os

    from .install import entry_names

    names = {segment.vlan: pair for segment, pair in zip(config.segments, entry_names(config))}
    directory = os.path.abspath(hook_dir)
    nics = []
    for vlan in vlans:
        if vlan not in names:
            raise UsageError(f"no segment vlan.{vlan} in {config.path}")
        ifup, ifdown = names[vlan]
        nics.append(Nic(vlan, os.path.join(directory, ifup), os.path.join(directory, ifdown)))
    return nics
