"""The whole suite on Debian 13 ("trixie": Python 3.13, QEMU 10, merged /usr, rpm 4.20,
kernel 6.12) when this machine runs another release.

`make debian13-root` makes a Debian 13 root with debootstrap and the project's packages
(cached in build/debian13, rebuilt when older than a week or when the package list
changes; tools/debian-root.sh). A copy of this tree runs `make test` there, with the
same STRICT setting, in mount and PID namespaces of its own: unit, namespace, QEMU,
guest, full-kernel and package tests against Debian 13's Python, QEMU and tools. The
inner pytest's JUnit report says which inner tests failed; its output is kept in
build/debian13-test.log.

On Debian 13 itself the ordinary run is the Debian 13 run, so this test is skipped
there (a skip that STRICT=1 does not turn into a failure: nothing is missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT, cannot_run, debian_release, require_root

RELEASE = 13
DEBIAN_ROOT = ROOT / os.environ.get("DEBIAN13_ROOT", "build/debian13")
SRC = "/src/qemu-ifhooks"  # the tree's copy, inside the root
STATE = "/var/cache/qemu-ifhooks"  # the inner venv and guest, kept between runs
JUNIT = "debian13-junit.xml"  # in the copy
LOG = ROOT / "build" / "debian13-test.log"
TIMEOUT = 45 * 60

# Tests that must have run and passed inside, not been skipped: the tiers that differ
# on Debian 13.
MUST_PASS = [
    "test_qemu::test_downscripts_after_qemu_dropped_privileges",
    "test_qemu::test_booted_guest_pings_through_each_bridge",
    "test_packaging::test_deb_is_lintian_clean",
    "test_packaging::test_purge_leaves_nothing_behind",
    "test_packaging::test_rpm_is_rpmlint_clean",
    "test_vlan_netlink::test_in_vm[vm_kernel_has_what_the_host_lacks]",
]
KERNEL = "6.12."  # what Debian 13's linux-image-amd64 depends on

SUMMARY: List[str] = []  # shown at the end of the outer run (conftest)


def run_logged(argv: List[str], log) -> int:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    return subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT).returncode


def inner_results(junit: Path) -> Dict[str, str]:
    """{"module::test": "passed" | "failed" | "error" | "skipped"} from a JUnit report."""
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = "failed" if kind == "failure" else kind
        results[name] = outcome
    return results


def test_suite_on_debian13():
    if debian_release() == RELEASE:
        pytest.skip(f"this machine runs Debian {RELEASE}: this run is the Debian {RELEASE} run")
    require_root()
    for tool in ("debootstrap", "unshare"):
        if shutil.which(tool) is None:
            cannot_run(f"needs {tool} (make deps)")
    LOG.parent.mkdir(exist_ok=True)
    with open(LOG, "w") as log:
        started = time.monotonic()
        assert run_logged(["make", "--no-print-directory", "debian13-root",
                           f"DEBIAN13_ROOT={DEBIAN_ROOT}"], log) == 0, \
            f"make debian13-root failed; see {LOG}"
        root_ready = time.monotonic()
        copy = DEBIAN_ROOT / SRC.lstrip("/")
        shutil.rmtree(copy, ignore_errors=True)
        assert run_logged([str(ROOT / "tools" / "copy-tree.sh"), str(copy)], log) == 0
        inner = (f"cd {SRC} && make test VENV={STATE}/venv GUEST_DIR={STATE}/guest "
                 f"STRICT={os.environ.get('QEMU_IFHOOKS_STRICT', '0')} "
                 f"PYTEST_ARGS='-p no:cacheprovider --junitxml={JUNIT}'")
        status = run_logged([str(ROOT / "tools" / "debian-root.sh"), "run", str(DEBIAN_ROOT),
                             "sh", "-c", inner], log)
        done = time.monotonic()

    output = LOG.read_text(errors="replace")
    lines = output.splitlines()
    summary = next((l.strip("= ") for l in reversed(lines) if l.startswith("====")), "")
    SUMMARY.append(f"Debian {RELEASE} tier: {summary or 'no pytest summary'}; root "
                   f"{root_ready - started:.0f} s, suite {done - root_ready:.0f} s "
                   f"(log: {LOG.relative_to(ROOT)})")
    junit = copy / JUNIT
    results = inner_results(junit) if junit.is_file() else {}
    failed = sorted(name for name, outcome in results.items() if outcome in ("failed", "error"))
    tail = "\n".join(lines[-40:])
    assert status == 0 and not failed, \
        f"`make test` on Debian {RELEASE} exited {status}; inner failures: {failed}\n{tail}"
    assert "Python 3.13" in output, "the inner suite did not run on Debian 13's Python"
    release = (DEBIAN_ROOT / STATE.lstrip("/") / "guest" / "kernel-release").read_text()
    assert release.startswith(KERNEL), f"the guest kernel on Debian {RELEASE} is {release}"
    missing = [name for name in MUST_PASS if results.get(name) != "passed"]
    assert not missing, f"did not pass on Debian {RELEASE}: " + \
        ", ".join(f"{n} ({results.get(n, 'not run')})" for n in missing)
