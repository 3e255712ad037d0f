"""The hook path's environment variables, read without `import os`.

Under `python3 -IS` nothing has imported `os` before the hook, and importing it costs
about 1.5 ms of every hook start (it builds the collections ABCs behind os.environ),
some 15% of the interpreter's own start-up. So the hook path calls `posix`, the
module whose functions os re-exports unchanged (os.open is posix.open), and reads
its few variables here.
"""

from __future__ import annotations

import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def getenv(name: str) -> Optional[str]:
    os = sys.modules.get("os")
    if os is not None:  # the CLI or a test, which may have changed os.environ since
        return os.environ.get(name)
    value = posix.environ.get(name.encode())
    return None if value is None else value.decode("utf-8", "surrogateescape")
