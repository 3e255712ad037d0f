"""Carry out planned operations over netlink, and read the result back."""

from __future__ import annotations

from .errors import HookError, KernelError, PermissionDenied, UnavailableError
from .lock import mark_guards_used
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
        if op.kind == "guard":
            return self._guard_inverse(op)
        if op.ifname in self.created:
            return None
        if op.kind == "build":
            return self._build_inverse(op)
        if op.kind == "vxlan":
            return self._vxlan_inverse(op)
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

    def _build_inverse(self, op: Op) -> Optional[Op]:
        from .buildops import SetAlias

        if not isinstance(op, SetAlias):
            return None  # DeleteLink: a deletion cannot be undone
        self.index(op.ifname)  # makes sure its state before is known
        return SetAlias(op.ifname, self.before[op.ifname].alias or "")

    def _vxlan_inverse(self, op: Op) -> Optional[Op]:
        from .vxlanops import FdbAppend, FdbDel

        if isinstance(op, FdbAppend):
            return FdbDel(op.ifname, op.dst)
        if isinstance(op, FdbDel):
            return FdbAppend(op.ifname, op.dst)
        # SetBridgePort: only planned with the SetMaster whose undo removes the port and
        # its flags.
        return None

    def _guard_inverse(self, op: Op) -> Optional[Op]:
        from .guardops import RemovePortRules, SetPortIsolated, SetPortRules, ShapeGuest, Unshape

        if isinstance(op, SetPortRules):
            return RemovePortRules(op.ifname)  # rules a killed VM left are not worth keeping
        if isinstance(op, ShapeGuest):
            return Unshape(op.ifname)  # likewise its rate limits
        if isinstance(op, SetPortIsolated) and op.ifname not in self.created:
            return SetPortIsolated(op.ifname, not op.isolated)
        return None  # RemovePortRules, Unshape: like deletions

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
        if op.kind == "build":
            self._apply_build(op)
        elif op.kind == "guard":
            self._apply_guard(op)
        elif op.kind == "vxlan":
            self._apply_vxlan(op)
        else:
            self._apply_link(op)

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

    def _apply_build(self, op: Op) -> None:
        from .buildops import CreateBridge, CreateVlan, DeleteLink, SetAlias
        from .linkbuild import create_bridge, create_vlan, delete_link

        nl = self.nl
        if isinstance(op, CreateBridge):
            create_bridge(nl, op.bridge, address=op.address, stp=op.stp,
                          forward_delay=op.forward_delay, vlan_filtering=op.vlan_aware,
                          default_pvid=0 if op.vlan_aware else None)
        elif isinstance(op, CreateVlan):
            create_vlan(nl, op.ifname, parent=self.index(op.parent), vid=op.vid)
        elif isinstance(op, SetAlias):
            nl.set_link(self.index(op.ifname), alias=op.alias)
        elif isinstance(op, DeleteLink):
            delete_link(nl, self.index(op.ifname))
            del self.indexes[op.ifname]
        else:  # pragma: no cover - a new Op type without an executor
            raise TypeError(f"no executor for {op!r}")

    def _apply_guard(self, op: Op) -> None:
        from .guardops import RemovePortRules, SetPortIsolated, SetPortRules, ShapeGuest, Unshape
        from .linkbuild import set_bridge_port

        nl = self.nl
        if isinstance(op, SetPortRules):
            mark_guards_used()
            nft = self.nftables()
            nft.ensure_table()
            nft.set_port(op.ifname, [rule.expressions for rule in op.rules])
        elif isinstance(op, RemovePortRules):
            self.nftables().remove_port(op.ifname)
        elif isinstance(op, SetPortIsolated):
            set_bridge_port(nl, self.index(op.ifname), isolated=op.isolated)
        elif isinstance(op, ShapeGuest):
            from . import tc

            mark_guards_used()
            tc.shape(nl, self.index(op.ifname), op.ifname, op.rx_mbit, op.tx_mbit)
        elif isinstance(op, Unshape):
            from . import tc

            tap = nl.get_link(op.ifname)
            tc.unshape(nl, op.ifname, tap.index if tap else None)
        else:  # pragma: no cover - a new Op type without an executor
            raise TypeError(f"no executor for {op!r}")

    def _apply_vxlan(self, op: Op) -> None:
        from . import vxlannl
        from .linkbuild import set_bridge_port
        from .vxlanops import CreateVxlan, FdbAppend, SetBridgePort

        if isinstance(op, CreateVxlan):
            vxlannl.create_vxlan(self.nl, op.ifname, vni=op.vni, local=op.local,
                                 dev=self.index(op.dev), group=op.group,
                                 learning=op.learning, mtu=op.mtu)
        elif isinstance(op, SetBridgePort):
            flags = {"learning": op.learning, "neigh_suppress": op.neigh_suppress}
            set_bridge_port(self.nl, self.index(op.ifname),
                            **{name: on for name, on in flags.items() if on is not None})
        elif isinstance(op, FdbAppend):
            vxlannl.fdb_append(self.nl, self.index(op.ifname), op.dst)
        else:
            vxlannl.fdb_del(self.nl, self.index(op.ifname), op.dst)


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
