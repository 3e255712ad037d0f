"""How apply.Executor carries out the ops of buildops.py, and what undoes them: loaded
when a run first builds or deletes a link."""

from __future__ import annotations

from .buildops import CreateBridge, CreateVlan, DeleteLink, SetAlias
from .linkbuild import create_bridge, create_vlan, delete_link

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

    from .apply import Executor
    from .ops import Op


def apply(run: Executor, op: Op) -> None:
    nl = run.nl
    if isinstance(op, CreateBridge):
        create_bridge(nl, op.bridge, address=op.address, stp=op.stp,
                      forward_delay=op.forward_delay, vlan_filtering=op.vlan_aware,
                      default_pvid=0 if op.vlan_aware else None)
    elif isinstance(op, CreateVlan):
        create_vlan(nl, op.ifname, parent=run.index(op.parent), vid=op.vid)
    elif isinstance(op, SetAlias):
        nl.set_link(run.index(op.ifname), alias=op.alias)
    elif isinstance(op, DeleteLink):
        delete_link(nl, run.index(op.ifname))
        del run.indexes[op.ifname]
    else:  # pragma: no cover - a new Op type without an executor
        raise TypeError(f"no executor for {op!r}")


def inverse(run: Executor, op: Op) -> Optional[Op]:
    """For a link that existed before the run: a creation's undo is the Executor's."""
    if not isinstance(op, SetAlias):
        return None  # DeleteLink: a deletion cannot be undone
    run.index(op.ifname)  # makes sure its state before is known
    return SetAlias(op.ifname, run.before[op.ifname].alias or "")
