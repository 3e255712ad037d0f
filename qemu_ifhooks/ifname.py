"""Linux interface-name rules, as the kernel's dev_valid_name() applies them."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

IFNAMSIZ = 16  # including the terminating NUL
# The kernel checks bytes with its own isspace() (lib/ctype.c: \t \n \v \f \r, space
# and Latin-1 NBSP), not Unicode's idea of white space.
_REFUSED_BYTES = frozenset(b"/:\t\n\v\f\r \xa0\0")


def ifname_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a Linux interface name, or None when it can."""
    raw = name.encode("utf-8", "surrogateescape")
    if not 1 <= len(raw) < IFNAMSIZ:
        return f"interface names are 1..{IFNAMSIZ - 1} bytes, got {len(raw)}"
    if name in (".", ".."):
        return "interface names cannot be '.' or '..'"
    for byte in raw:
        if byte in _REFUSED_BYTES:
            return f"interface names cannot contain {chr(byte)!r}"
    return None
