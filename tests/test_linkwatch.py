"""linkwatch: the link removals the kernel announces, read in a namespace of the test's
own while `ip` adds and deletes links there."""

from __future__ import annotations

import json
import sys
import textwrap

from conftest import ROOT

WATCHER = textwrap.dedent("""\
    import json, select, subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from qemu_ifhooks import linkwatch
    linkwatch._RCVBUF = int(sys.argv[2])  # small: to make the kernel drop events
    count = int(sys.argv[3])
    with linkwatch.LinkWatch() as watch:
        script = "".join(f"link add qihw{i} type bridge\\nlink del qihw{i}\\n" for i in range(count))
        subprocess.run(["ip", "-batch", "-"], input=script, text=True, check=True)
        ready, _, _ = select.select([watch], [], [], 10)
        first = watch.removed() if ready else "timeout"
        second = watch.removed()
    print(json.dumps([first, second]))
""")


def watch(ns, rcvbuf: int, count: int):
    done = ns.run(sys.executable, "-c", WATCHER, str(ROOT), str(rcvbuf), str(count),
                  check=True)
    return json.loads(done.stdout)


def test_removed_names_the_links_deleted_in_the_namespace(make_netns):
    ns = make_netns("qih-lw")
    first, second = watch(ns, 1 << 20, 3)
    assert first == ["qihw0", "qihw1", "qihw2"]
    assert second == []  # nothing more queued: read once


def test_an_overrun_says_anything_may_have_gone(make_netns):
    ns = make_netns("qih-lw")
    first, second = watch(ns, 4096, 40)  # far more events than 4 KiB holds
    assert first is None
    assert second == []  # the queue was drained with the overrun
