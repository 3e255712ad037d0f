"""Carry out planned operations over netlink, and read the result back."""

from __future__ import annotations

import errno
from typing import Callable, Dict, Iterable, Optional

from .errors import HookError, KernelError, PermissionDenied, UnavailableError
from .netlink import Link, Netlink
from .plan import (CreateBridge, DeleteLink, Op, SetDown, SetMaster, SetMtu, SetNoMaster,
                   SetUp)


def kernel_error(op: Op, error: OSError) -> HookError:
    """Map the kernel's refusal of one operation to the exit-status table."""
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
        for op in ops:
            self.trace(op.command())
            try:
                self._apply(op)
            except OSError as error:
                raise kernel_error(op, error) from None

    def _apply(self, op: Op) -> None:
        nl = self.nl
        if isinstance(op, CreateBridge):
            nl.create_bridge(op.bridge, address=op.address, stp=op.stp,
                             forward_delay=op.forward_delay)
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
