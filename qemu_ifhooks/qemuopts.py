"""QEMU's option text (QemuOpts): `tap,id=n0,ifname=tap0,script=/a,,b`.

Small and import-free: the hook reads the calling QEMU's command line with it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Tuple

    Option = Tuple[str, Optional[str]]  # (key, value); value None: a bare flag such as "vhost"


def split_opts(text: str) -> List[Option]:
    """`tap,vlan=0,script=/a,,b` -> [("tap", None), ("vlan", "0"), ("script", "/a,b")]:
    QEMU's own rule, where ",," is a literal comma inside a value."""
    parts = []
    current = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    options = []
    for part in parts:
        key, sep, value = part.partition("=")
        options.append((key, value if sep else None))
    return options


def join_opts(options: Iterable[Option]) -> str:
    """The inverse of split_opts: commas in values doubled."""
    out = []
    for key, value in options:
        out.append(key if value is None else f"{key}={value.replace(',', ',,')}")
    return ",".join(out)
