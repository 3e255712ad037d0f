"""`qemu-ifhooks libvirt-xml`: the <interface> elements of a libvirt domain with one NIC
per VLAN on the installed hook entries, as `qemu-args` gives QEMU's arguments.

libvirtd, not QEMU, runs <script> (before QEMU starts, with the TAP already created)
and <downscript> (after QEMU exited), with an environment cleared of everything but
LC_ALL, PATH, HOME, USER and LOGNAME: entries installed with --config read their config
whatever that environment is. Pure: values in, text out.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence
from xml.sax.saxutils import quoteattr

from .errors import UsageError
from .qemuargs import Nic, vm_mac, vm_tap_name

DEFAULT_MODEL = "virtio"
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# libvirt generates TAP names with these prefixes and refuses them in <target dev>
RESERVED_PREFIXES = ("vnet", "vif", "macvtap", "macvlan")


def interface_xml(nic: Nic, vm: Optional[str], model: str = DEFAULT_MODEL) -> str:
    lines = ["<interface type='ethernet'>"]
    if vm is not None:
        tap = vm_tap_name(vm, nic.vlan)
        if tap.startswith(RESERVED_PREFIXES):
            tap = f"t{tap}"[:15]
        lines += [f"  <mac address={quoteattr(vm_mac(vm, nic.vlan))}/>",
                  f"  <target dev={quoteattr(tap)}/>"]
    lines += [f"  <model type={quoteattr(model)}/>",
              f"  <script path={quoteattr(nic.ifup)}/>",
              f"  <downscript path={quoteattr(nic.ifdown)}/>",
              "</interface>"]
    return "\n".join(lines)


def libvirt_xml(nics: Sequence[Nic], vm: Optional[str], model: str = DEFAULT_MODEL) -> str:
    if not _MODEL.match(model):
        raise UsageError(f"invalid NIC model {model!r}: expected a libvirt model type such "
                         f"as virtio or e1000")
    out: List[str] = []
    seen = set()
    for nic in nics:
        if nic.vlan in seen:
            raise UsageError(f"VLAN {nic.vlan} given twice: one NIC per VLAN")
        seen.add(nic.vlan)
        out.append(interface_xml(nic, vm, model))
    return "\n".join(out) + "\n"
