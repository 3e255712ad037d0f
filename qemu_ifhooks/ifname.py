"""Linux interface-name rules, as the kernel's dev_valid_name() applies them."""

from __future__ import annotations

from typing import Optional

IFNAMSIZ = 16  # including the terminating NUL


def ifname_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a Linux interface name, or None when it can."""
    size = len(name.encode("utf-8", "surrogateescape"))
    if not 1 <= size < IFNAMSIZ:
        return f"interface names are 1..{IFNAMSIZ - 1} bytes, got {size}"
    if name in (".", ".."):
        return "interface names cannot be '.' or '..'"
    for char in name:
        if char == "/" or char == ":" or char.isspace() or char == "\0":
            return f"interface names cannot contain {char!r}"
    return None
