"""Carry out planned operations over netlink, and read the result back."""

from __future__ import annotations

import errno

from .errors import HookError, KernelError, PermissionDenied, UnavailableError
from .netlink import Link, MissingKernelFeature, Netlink
from .plan import (BridgeVlanAdd, BridgeVlanDel, CreateBridge, CreateVlan, DeleteLink, Op,
                   SetAlias, SetDown, SetMaster, SetMtu, SetNoMaster, SetUp, kernel_lacks)

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, List, Optional


def kernel_error(op: Op, error: OSError) -> HookError:
    """Map the kernel's refusal of one operation to the exit-status table."""
    if isinstance(error, MissingKernelFeature):
        return kernel_lacks(error.feature)
    what = f"'{op.command()}' failed: {error.strerror or error}"
    if error.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"{what}; the hook needs CAP_NET_ADMIN (run QEMU as root, "
                                f"or give the hook the capability)")
    if error.errno == errno.ENODEV:
        return UnavailableError(f"{what} (the interface disappeared)")
    return KernelError(what)


class Executor:
    """Applies operations, resolving interface names to indexes once each."""

    def __init__(self, nl: Netlink, known: Iterable[Optional[Link]] = (),
                 trace: Callable[[str], None] = lambda command: None):
        self.nl = nl
        self.trace = trace
        self.indexes: Dict[str, int] = {link.name: link.index for link in known if link}

    def index(self, name: str) -> int:
        if name not in self.indexes:
            link = self.nl.get_link(name)
            if link is None:
                raise UnavailableError(f"{name} does not exist")
            self.indexes[name] = link.index
        return self.indexes[name]

    def apply(self, ops: Iterable[Op]) -> None:
        """Carry out `ops` in order. When one fails, the links created so far are
        deleted again: a failure leaves nothing half-built."""
        created: List[str] = []
        try:
            for op in ops:
                self.trace(op.command())
                try:
                    self._apply(op)
                except OSError as error:
                    raise kernel_error(op, error) from None
                if isinstance(op, (CreateBridge, CreateVlan)):
                    created.append(op.ifname)
        except BaseException:
            self._undo(created)
            raise

    def _undo(self, created: List[str]) -> None:
        for name in reversed(created):
            undo = DeleteLink(name)
            self.trace(f"{undo.command()} (undo)")
            try:
                self._apply(undo)
            except (OSError, HookError):
                pass  # the error being raised matters more

    def _apply(self, op: Op) -> None:
        nl = self.nl
        if isinstance(op, CreateBridge):
            nl.create_bridge(op.bridge, address=op.address, stp=op.stp,
                             forward_delay=op.forward_delay, vlan_filtering=op.vlan_aware,
                             default_pvid=0 if op.vlan_aware else None)
        elif isinstance(op, CreateVlan):
            nl.create_vlan(op.ifname, parent=self.index(op.parent), vid=op.vid)
        elif isinstance(op, SetAlias):
            nl.set_link(self.index(op.ifname), alias=op.alias)
        elif isinstance(op, BridgeVlanAdd):
            nl.bridge_vlan_add(self.index(op.ifname), op.vid, pvid=op.pvid_untagged,
                               untagged=op.pvid_untagged)
        elif isinstance(op, BridgeVlanDel):
            nl.bridge_vlan_del(self.index(op.ifname), op.vid)
        elif isinstance(op, SetMtu):
            nl.set_link(self.index(op.ifname), mtu=op.mtu)
        elif isinstance(op, SetMaster):
            nl.set_link(self.index(op.ifname), master=self.index(op.master))
        elif isinstance(op, SetNoMaster):
            nl.set_link(self.index(op.ifname), master=0)
        elif isinstance(op, (SetUp, SetDown)):
            nl.set_link(self.index(op.ifname), up=isinstance(op, SetUp))
        elif isinstance(op, DeleteLink):
            nl.delete_link(self.index(op.ifname))
            del self.indexes[op.ifname]
        else:  # pragma: no cover - a new Op type without an executor
            raise TypeError(f"no executor for {op!r}")


def verify_attached(nl: Netlink, tap: str, bridge: Link) -> Link:
    """Read the TAP back: the plan is done only if the kernel says so."""
    link = nl.get_link(tap)
    if link is None:
        raise UnavailableError(f"{tap} disappeared while being attached")
    if link.master != bridge.index or not link.is_up:
        raise KernelError(f"after attaching, {tap} has master ifindex {link.master} "
                          f"(want {bridge.index}, {bridge.name}) and is "
                          f"{'up' if link.is_up else 'down'}")
    return link
