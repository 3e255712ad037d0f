"""Carry out planned operations over netlink, and read the result back.

The Executor runs the link ops of ops.py itself; those of the other kinds (building,
guards, VXLAN) are carried out and undone by buildapply.py, guardapply.py and
vxlanapply.py, which a run loads when it first has such an op."""

from __future__ import annotations

from .errors import HookError, KernelError, PermissionDenied, UnavailableError
from .netlink import Link, Netlink
from .ops import BridgeVlanAdd, BridgeVlanDel, Op, SetDown, SetMaster, SetMtu, SetNoMaster, SetUp
from .plan import kernel_lacks

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, List, Optional, Set


def kernel_error(op: Op, error: OSError) -> HookError:
    """Map the kernel's refusal of one operation to the exit-status table."""
    feature = getattr(error, "feature", None)  # bridgevlan.MissingKernelFeature
    if feature is not None:
        return kernel_lacks(feature)
    return refusal(f"'{op.command()}'", error)


def refusal(what: str, error: OSError) -> HookError:
    """Map the kernel's refusal of `what` (an operation, or a netlink query) to the
    exit-status table."""
    import errno  # here, not at the top: see nlsocket.py

    what = f"{what} failed: {error.strerror or error}"
    if error.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"{what}; the hook needs CAP_NET_ADMIN (run QEMU as root, "
                                f"or give the hook the capability)")
    if error.errno == errno.ENODEV:
        return UnavailableError(f"{what} (the interface disappeared)")
    return KernelError(what)


class Executor:
    """Applies operations, resolving interface names to indexes once each, and keeps
    what undoes them: used as a context manager, it rolls back every change made
    within it when the block fails, so that a failed run leaves the kernel as it was.

    Undone: links created (deleted again), ports enslaved, MTUs, up/down, aliases and
    bridge VLANs set on links that existed before. Not undone: deletions (the admin's
    `down`), which nothing earlier in a run depends on."""

    def __init__(self, nl: Netlink, known: Iterable[Optional[Link]] = (),
                 trace: Callable[[str], None] = lambda command: None):
        self.nl = nl
        self.trace = trace
        self.indexes: Dict[str, int] = {}
        self.before: Dict[str, Link] = {}  # links as they were before this run changed them
        self.created: Set[str] = set()
        self.undo: List[Op] = []
        self._nftables = None
        self.know(*known)

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.rollback()
        if self._nftables is not None:
            self._nftables.__exit__()

    def nftables(self):
        """The nf_tables socket, opened when a rule first needs it."""
        if self._nftables is None:
            from .nftables import Nftables

            self._nftables = Nftables()
        return self._nftables

    def know(self, *links: Optional[Link]) -> None:
        """Links as just observed: their indexes, and their state where this run has
        not changed them yet (the state a rollback returns them to)."""
        for link in links:
            if link is None:
                continue
            self.indexes[link.name] = link.index
            changed = link.name in self.created or any(op.ifname == link.name for op in self.undo)
            if not changed:
                self.before[link.name] = link

    def index(self, name: str) -> int:
        if name not in self.indexes:
            link = self.nl.get_link(name)
            if link is None:
                raise UnavailableError(f"{name} does not exist")
            self.know(link)
        return self.indexes[name]

    def apply(self, ops: Iterable[Op]) -> None:
        """Carry out `ops` in order, keeping the inverse of each."""
        for op in ops:
            self.trace(op.command())
            try:
                inverse = self._inverse(op)
                if inverse is not None and op.compound:
                    self.undo.append(inverse)  # it cleans up whatever part was done
                self._apply(op)
            except OSError as error:
                raise kernel_error(op, error) from None
            if op.creates:
                self.created.add(op.ifname)
            if inverse is not None and not op.compound:
                self.undo.append(inverse)

    def _inverse(self, op: Op) -> Optional[Op]:
        """What returns the kernel to its state before `op`; None when nothing needs to
        (a link created in this run goes away whole) or nothing can (a deletion)."""
        if op.creates:
            from .buildops import DeleteLink

            return DeleteLink(op.ifname)
        if op.kind == "guard":  # rules and ifbs outlive a TAP made in this run
            return _executor_of(op.kind).inverse(self, op)
        if op.ifname in self.created:
            return None
        if op.kind != "link":
            return _executor_of(op.kind).inverse(self, op)
        self.index(op.ifname)  # makes sure its state before is known
        was = self.before[op.ifname]
        if isinstance(op, SetMtu):
            return SetMtu(op.ifname, was.mtu) if was.mtu != op.mtu else None
        if isinstance(op, SetMaster):
            return SetNoMaster(op.ifname) if not was.master else None
        if isinstance(op, SetUp):
            return SetDown(op.ifname) if not was.is_up else None
        if isinstance(op, SetDown):
            return SetUp(op.ifname) if was.is_up else None
        if isinstance(op, BridgeVlanAdd):
            return BridgeVlanDel(op.ifname, op.vid)
        if isinstance(op, BridgeVlanDel):
            return BridgeVlanAdd(op.ifname, op.vid)
        return None  # SetNoMaster: only `down` detaches, and it is not rolled back

    def rollback(self) -> None:
        """Undo this run's changes, newest first. Best effort: the error that caused the
        rollback is the one to report."""
        from .buildops import DeleteLink  # the undo of every creation

        while self.undo:
            op = self.undo.pop()
            self.trace(f"{op.command()} (undo)")
            try:
                self._apply(op)
            except (OSError, HookError):
                pass
            if isinstance(op, DeleteLink):
                self.created.discard(op.ifname)

    def _apply(self, op: Op) -> None:
        if op.kind == "link":
            self._apply_link(op)
        else:
            _executor_of(op.kind).apply(self, op)

    def _apply_link(self, op: Op) -> None:
        nl = self.nl
        if isinstance(op, BridgeVlanAdd):
            from .bridgevlan import bridge_vlan_add

            bridge_vlan_add(nl, self.index(op.ifname), op.vid, pvid=op.pvid_untagged,
                            untagged=op.pvid_untagged)
        elif isinstance(op, BridgeVlanDel):
            from .bridgevlan import bridge_vlan_del

            bridge_vlan_del(nl, self.index(op.ifname), op.vid)
        elif isinstance(op, SetMtu):
            nl.set_link(self.index(op.ifname), mtu=op.mtu)
        elif isinstance(op, SetMaster):
            nl.set_link(self.index(op.ifname), master=self.index(op.master))
        elif isinstance(op, SetNoMaster):
            nl.set_link(self.index(op.ifname), master=0)
        elif isinstance(op, (SetUp, SetDown)):
            nl.set_link(self.index(op.ifname), up=isinstance(op, SetUp))
        else:  # pragma: no cover - a new Op type without an executor
            raise TypeError(f"no executor for {op!r}")


def _executor_of(kind: str):
    """The module that carries out the ops of `kind` and knows their inverses, loaded
    when a run first has one: a hook on an existing bridge runs only link ops."""
    if kind == "build":
        from . import buildapply as executor
    elif kind == "guard":
        from . import guardapply as executor
    else:
        from . import vxlanapply as executor
    return executor


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
