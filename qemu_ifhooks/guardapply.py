"""How apply.Executor carries out the ops of guardops.py (nftables rules, isolation,
rate limits), and what undoes them: loaded when a run first guards a TAP or removes
what guarded one."""

from __future__ import annotations

from .guardops import RemovePortRules, SetPortIsolated, SetPortRules, ShapeGuest, Unshape
from .linkbuild import set_bridge_port
from .lock import mark_guards_used

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

    from .apply import Executor
    from .ops import Op


def apply(run: Executor, op: Op) -> None:
    nl = run.nl
    if isinstance(op, SetPortRules):
        mark_guards_used()
        nft = run.nftables()
        nft.ensure_table()
        nft.set_port(op.ifname, [rule.expressions for rule in op.rules])
    elif isinstance(op, RemovePortRules):
        run.nftables().remove_port(op.ifname)
    elif isinstance(op, SetPortIsolated):
        set_bridge_port(nl, run.index(op.ifname), isolated=op.isolated)
    elif isinstance(op, ShapeGuest):
        from . import tc

        mark_guards_used()
        tc.shape(nl, run.index(op.ifname), op.ifname, op.rx_mbit, op.tx_mbit)
    elif isinstance(op, Unshape):
        from . import tc

        tap = nl.get_link(op.ifname)
        tc.unshape(nl, op.ifname, tap.index if tap else None)
    else:  # pragma: no cover - a new Op type without an executor
        raise TypeError(f"no executor for {op!r}")


def inverse(run: Executor, op: Op) -> Optional[Op]:
    """Also for a TAP made in the same run: its rules and ifbs outlive it."""
    if isinstance(op, SetPortRules):
        return RemovePortRules(op.ifname)  # rules a killed VM left are not worth keeping
    if isinstance(op, ShapeGuest):
        return Unshape(op.ifname)  # likewise its rate limits
    if isinstance(op, SetPortIsolated) and op.ifname not in run.created:
        return SetPortIsolated(op.ifname, not op.isolated)
    return None  # RemovePortRules, Unshape: like deletions
