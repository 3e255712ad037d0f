"""The full-kernel tier's harness (tests/fullkernel.py): every outcome of the guest-side
pytest comes back, and a guest that hangs, crashes, panics or never runs its payload
ends in one clear error with the guest's console, leaving no QEMU process and no work
directory behind."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

import fullkernel

HARNESS_PAYLOAD = '''
import os
import signal
import pytest

def vm_passes():
    assert os.environ["QEMU_IFHOOKS_IN_VM"] == "1"

def vm_fails():
    got = [1, 2]
    assert got == [1, 3]

def vm_skips():
    pytest.skip("nothing to do here")

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def vm_errors(broken):
    pass

def vm_crashes():
    os.kill(os.getpid(), signal.SIGSEGV)

def vm_never_runs():
    pass
'''


def _qemu_processes() -> set:
    """QEMU processes of this harness (their command line names a work directory)."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if b"qemu-ifhooks-vm." in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(int(pid))
            except OSError:
                pass
    return found


def _work_dirs() -> set:
    return set(Path(tempfile.gettempdir()).glob("qemu-ifhooks-vm.*"))


@pytest.fixture
def leaves_nothing():
    fullkernel.require_full_kernel()
    before, running = _work_dirs(), _qemu_processes()
    yield
    assert _work_dirs() <= before  # another run's guests may come and go meanwhile
    assert _qemu_processes() <= running


def test_reports_each_outcome_and_a_crash(tmp_path, leaves_nothing):
    payload = tmp_path / "payload_checks.py"  # on the host's /tmp, which the guest sees too
    payload.write_text(HARNESS_PAYLOAD)
    names = ["vm_passes", "vm_fails", "vm_skips", "vm_errors", "vm_crashes", "vm_never_runs"]
    results = fullkernel.run_pytest({payload: names})
    got = {name: results.outcomes.get(f"{payload.resolve()}::{name}") for name in names}
    assert got["vm_passes"].outcome == "passed"
    assert got["vm_fails"].outcome == "failed"
    assert "assert [1, 2] == [1, 3]" in got["vm_fails"].text  # pytest's introspection, from the guest
    assert got["vm_skips"] == ("skipped", "Skipped: nothing to do here", got["vm_skips"].seconds)
    assert got["vm_errors"].outcome == "failed" and "error in setup" in got["vm_errors"].text
    assert "fixture broke" in got["vm_errors"].text
    # pytest itself died in vm_crashes: neither it nor what came after reported.
    assert got["vm_crashes"] is None and got["vm_never_runs"] is None
    assert results.boot.status == 128 + 11  # SIGSEGV, as the guest's shell saw it
    assert "Fatal Python error: Segmentation fault" in results.boot.output
    assert 0 < results.boot.boot_seconds < results.boot.seconds < 200

    results.report(payload, "vm_passes")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)vm_fails failed in the guest:.*\[1, 3\]"):
        results.report(payload, "vm_fails")
    with pytest.raises(pytest.skip.Exception, match="nothing to do here"):
        results.report(payload, "vm_skips")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)vm_crashes did not report from the guest "
                                                    r"\(pytest exit 139\).*Segmentation fault"):
        results.report(payload, "vm_crashes")


def test_shell_payload_files_and_status(leaves_nothing):
    done = fullkernel.boot('echo "$QEMU_IFHOOKS_IN_VM" "$(uname -r)" "$(cat /proc/net/vlan/config | head -c 4)"; '
                           'echo out > "$QEMU_IFHOOKS_VM_OUT/file"; touch /usr/bin/written-in-the-guest; exit 7',
                           modules=("8021q",))
    assert (done.status, done.files) == (7, {"file": b"out\n"})
    assert done.output.split() == ["1", fullkernel.kernel_release(), "VLAN"]
    assert not Path("/usr/bin/written-in-the-guest").exists()  # writes stay in the guest


def test_a_hanging_payload_is_killed_at_the_time_limit(leaves_nothing):
    started = time.monotonic()
    with pytest.raises(fullkernel.VmError, match=r"did not finish within 30 s(?s:.*)sleeping"):
        fullkernel.boot("echo sleeping; sleep 600", timeout=30, modules=())
    assert time.monotonic() - started < 40


def test_a_guest_kernel_panic_is_one_clear_error(leaves_nothing):
    with pytest.raises(fullkernel.VmError, match=r"^the guest kernel panicked: .*Kernel panic - not syncing: "
                                                 r"sysrq triggered crash(?s:.*)--- guest console ---"):
        fullkernel.boot("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger; sleep 60", modules=())


def test_a_guest_that_cannot_set_up_never_runs_the_payload(leaves_nothing):
    with pytest.raises(fullkernel.VmError, match=r"^the guest could not load its modules:(?s:.*)"
                                                 r"modprobe failed: no_such_module"):
        fullkernel.boot("echo never > /dev/console", modules=("bridge", "no_such_module"))


def test_qemu_failing_to_start_is_one_clear_error(monkeypatch, leaves_nothing):
    argv = fullkernel._qemu_argv
    monkeypatch.setattr(fullkernel, "_qemu_argv", lambda work: argv(work) + ["-no-such-option"])
    with pytest.raises(fullkernel.VmError, match=r"^QEMU exited with status 1 before the payload finished: "
                                                 r".*-no-such-option: invalid option"):
        fullkernel.boot("true")


def test_a_boot_that_fails_fails_every_check_with_the_reason(monkeypatch):
    fullkernel.require_full_kernel()
    monkeypatch.setattr(fullkernel, "_qemu_argv", lambda work: ["false"])
    results = fullkernel.run_pytest({__file__: ["vm_anything"]})
    with pytest.raises(pytest.fail.Exception, match="^the full-kernel guest gave no results: QEMU exited with status 1"):
        results.report(__file__, "vm_anything")
