"""How apply.Executor carries out the ops of vxlanops.py, and what undoes them: loaded
when a run first has one."""

from __future__ import annotations

from . import vxlannl
from .linkbuild import set_bridge_port
from .vxlanops import CreateVxlan, FdbAppend, FdbDel, SetBridgePort

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

    from .apply import Executor
    from .ops import Op


def apply(run: Executor, op: Op) -> None:
    if isinstance(op, CreateVxlan):
        vxlannl.create_vxlan(run.nl, op.ifname, vni=op.vni, local=op.local,
                             dev=run.index(op.dev), group=op.group,
                             learning=op.learning, mtu=op.mtu)
    elif isinstance(op, SetBridgePort):
        flags = {"learning": op.learning, "neigh_suppress": op.neigh_suppress}
        set_bridge_port(run.nl, run.index(op.ifname),
                        **{name: on for name, on in flags.items() if on is not None})
    elif isinstance(op, FdbAppend):
        vxlannl.fdb_append(run.nl, run.index(op.ifname), op.dst)
    else:
        vxlannl.fdb_del(run.nl, run.index(op.ifname), op.dst)


def inverse(run: Executor, op: Op) -> Optional[Op]:
    """For a link that existed before the run: a creation's undo is the Executor's."""
    if isinstance(op, FdbAppend):
        return FdbDel(op.ifname, op.dst)
    if isinstance(op, FdbDel):
        return FdbAppend(op.ifname, op.dst)
    # SetBridgePort: only planned with the SetMaster whose undo removes the port and
    # its flags.
    return None
