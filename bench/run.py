#!/usr/bin/python3
"""Benchmark of the qemu-ifhooks hook program against its peers (`sudo make bench`).

Whole-process wall time of each hook, as QEMU pays it: fork/exec/wait measured from the
parent. Everything happens in a network namespace this program creates and deletes:

    controller (this file, no --worker)     root namespace: builds the hook directory and
      |                                     config, creates the namespace, renders results
      `- ip netns exec NS run.py --worker   inside it: the veth uplink, br0, the TAPs and
           `- the hooks, timed one by one   every timed run (so `ip netns exec` is not in
                                            the figures and /sys is the namespace's)

The worker writes raw samples as JSON; report.py turns them into bench/results.md, the
summary on stdout and bench/latency-vs-ports.png. Nothing here knows a result in advance.

Exit status: 0 when the run completed (a missed target is reported as MISS), 1 when a
hook failed or a check of the kernel's state after a hook failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CHECKOUT = BENCH_DIR.parent  # the directory holding qemu_ifhooks/
RUN_DIR = "/run/qemu-ifhooks"  # the hooks' locks, records and marks (lock.py)
PYTHON = "/usr/bin/python3"  # what packaged hooks run with; never the python3 on PATH
DEBIAN_IFUP = "/etc/qemu-ifup"
DEBIAN_IFDOWN = "/etc/qemu-ifdown"
NAIVE_HOOK = BENCH_DIR / "naive_pyroute2_hook.py"
NS_PREFIX = "qih-bench-"
GNU_TIME = "/usr/bin/time"  # Debian's package time: the peak RSS of one process

BRIDGE = "br0"
# A segment that spans hosts, on the same hook: its port is a VXLAN link over the
# uplink's peer (an underlay with an address), flooding to two static remotes.
VXLAN_BRIDGE = "br7"
VXLAN_LOCAL = "203.0.113.1"  # TEST-NET-3, only ever inside the namespace
UPLINK, UPLINK_PEER = "bup0", "bpeer0"
BRIDGE_ADDRESS = "192.0.2.1/24"  # TEST-NET-1, only ever inside the namespace
GATEWAY = "192.0.2.254"  # Debian's qemu-ifup picks the bridge of the default route
# The kernel numbers bridge ports with 10 bits and keeps port 0 (BR_MAX_PORTS = 1024):
# a bridge holds at most 1023 ports. Beyond that `ip link set ... master` fails with
# "Exchange full", so the 4,000-port point fills br0 and puts the rest on other bridges.
BRIDGE_MAX_PORTS = 1023
# On a host the config is written long before VMs start; the hook may treat a config
# changed in the last few seconds differently (its parse cache waits 2 s for coarse
# timestamps), so the timed runs start once the bench config is this old.
CONFIG_SETTLE_SECONDS = 3.0
PLAIN, GUARDED = "brplain", "brguard"  # two bridges without uplink: plain, and every guard
GUARD_TAPS = {"plain": "lat-plain", "guarded": "lat-guard"}
CONFIG = f"""\
# qemu-ifhooks benchmark (bench/run.py): one segment, the veth uplink of the namespace
[vlan.0]
bridge = "{BRIDGE}"
uplink = "{UPLINK}"

# The cost of guarding a TAP: the same ifup with and without port security, isolation
# and both rate limits.
[vlan.1]
bridge = "{PLAIN}"

[vlan.2]
bridge = "{GUARDED}"
port_security = "ip"
isolated = true
guest_rx_mbit = 100
guest_tx_mbit = 100

[port."{GUARD_TAPS['guarded']}"]
mac = "52:54:00:12:34:56"
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8::10"]

[vlan.7]
bridge = "{VXLAN_BRIDGE}"
vxlan = {{ vni = 5007, local = "{VXLAN_LOCAL}", dev = "{UPLINK_PEER}", remotes = ["203.0.113.2", "203.0.113.3"] }}
"""

SEED = 2026  # of the order of the contenders in each round (Worker.alternate)
# 100 rounds: the hooks' ratios to the interpreter sit near their 1.3x target, and with
# 40 their medians moved by up to 0.04 from run to run.
FULL = dict(runs=100, warmup=5, memory_runs=20, burst=128, sizes=[1, 100, 1000, 4000],
            other_links=4000)
QUICK = dict(runs=5, warmup=1, memory_runs=10, burst=16, sizes=[1, 100], other_links=100)


class Broken(Exception):
    """A hook failed or the kernel is not in the state a hook should have left it in."""


# --------------------------------------------------------------------------------------
# Controller: root namespace side
# --------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark the qemu-ifhooks hooks against Debian's /etc/qemu-ifup "
                    "and a naive pyroute2 hook, in a network namespace of its own (root).")
    p.add_argument("--runs", type=int, help="timed runs per contender and point (default 100)")
    p.add_argument("--warmup", type=int, help="untimed warm-up runs before them (default 5)")
    p.add_argument("--memory-runs", type=int, help="runs per contender for the peak RSS "
                                                   "(default 20)")
    p.add_argument("--burst", type=int, help="hooks started at once in the burst (default 128)")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                   help="TAPs already on bridges for the scaling points (default 1,100,1000,4000)")
    p.add_argument("--other-links", type=int,
                   help="links not on any bridge for the last scaling point (default 4000)")
    p.add_argument("--quick", action="store_true",
                   help="a short smoke run (5 runs, burst of 16, up to 100 ports); "
                        "writes to bench/quick/ unless --output-dir is given")
    p.add_argument("--output-dir", type=Path,
                   help="where results.md and the PNG go (default bench/)")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the temporary hook directory, config and raw samples")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--namespace", help=argparse.SUPPRESS)
    p.add_argument("--parent-netns", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.output_dir is None:
        args.output_dir = BENCH_DIR / "quick" if args.quick else BENCH_DIR
    if min(args.runs, args.memory_runs, args.burst, *args.sizes) < 1 or args.warmup < 0:
        p.error("--runs, --memory-runs, --burst and --sizes must be positive, "
                "--warmup not negative")
    return args


def controller(args, argv) -> int:
    if os.geteuid() != 0:
        print("bench/run.py: must run as root (it creates a network namespace, bridges and "
              "TAPs); try: sudo make bench", file=sys.stderr)
        return 2
    for path in (PYTHON, DEBIAN_IFUP, DEBIAN_IFDOWN, NAIVE_HOOK, GNU_TIME):
        if not os.access(path, os.X_OK):
            print(f"bench/run.py: {path} is missing or not executable "
                  f"(make bench installs what it needs)", file=sys.stderr)
            return 2
    for tool in ("ip", "ethtool", "qemu-system-x86_64", "unshare"):
        if shutil.which(tool) is None:
            print(f"bench/run.py: {tool} not found (apt-get install iproute2 ethtool)",
                  file=sys.stderr)
            return 2
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the namespace is always deleted.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)

    import report  # bench/report.py, beside this file

    meta = describe_machine(args, argv)  # before the run: the commit and tree measured
    started, cpu_before = time.monotonic(), cpu_times()
    workdir = Path(tempfile.mkdtemp(prefix="qih-bench-"))  # 0700, root's: safe for the config
    try:
        make_hook_dir(workdir)
        ns = f"{NS_PREFIX}{os.getpid()}"
        print(f"bench: namespace {ns}, work directory {workdir}", flush=True)
        with namespace(ns) as ns_state:
            command = ["ip", "netns", "exec", ns, PYTHON, str(Path(__file__).resolve()),
                       "--worker", "--workdir", str(workdir), "--namespace", ns,
                       "--parent-netns", str(netns_inode()), "--runs", str(args.runs),
                       "--warmup", str(args.warmup), "--burst", str(args.burst),
                       "--memory-runs", str(args.memory_runs),
                       "--sizes", ",".join(map(str, args.sizes)),
                       "--other-links", str(args.other_links)]
            ns_state["worker"] = worker_proc = subprocess.Popen(command)
            status = worker_proc.wait()
        if status != 0:
            print(f"bench: the run broke (worker exit status {status}); see the message "
                  f"above. {args.output_dir / 'results.md'} was left as it was.",
                  file=sys.stderr)
            return 1
        results = json.loads((workdir / "results.json").read_text())
        meta["duration_s"] = round(time.monotonic() - started, 1)
        meta["cpu_use"] = describe_cpu_use(cpu_before, cpu_times())
        args.output_dir.mkdir(parents=True, exist_ok=True)
        text = report.render(meta, results, args.output_dir)
        print(text)
        if results["broken"]:
            print("bench: something broke during the run (see 'Problems' above)",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        if args.keep_workdir:
            print(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            remove_config_cache(workdir / "qemu-ifhooks.toml")


def remove_config_cache(config: Path) -> None:
    """The hooks' parse cache of this run's config (one file in /run/qemu-ifhooks)."""
    sys.path.insert(0, str(CHECKOUT))
    from qemu_ifhooks.configcache import cache_path

    try:
        os.unlink(cache_path(str(config)))
    except OSError:
        pass


def _exit_on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def namespace(name):
    """A network namespace of our own, deleted on the way out whatever happens: first the
    worker (by PID), then any process still inside the namespace (all of them ours: hooks
    the worker started), then the namespace itself, which takes its TAPs, veths and
    bridges with it."""
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if name in existing.split():
        raise SystemExit(f"bench: namespace {name} exists already; not touching it")
    subprocess.run(["ip", "netns", "add", name], check=True)
    inode = os.stat(f"/run/netns/{name}").st_ino
    forget_namespace_state(inode)
    state = {}
    try:
        yield state
    finally:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM,
                                                            signal.SIGHUP})
        try:
            worker = state.get("worker")
            if worker is not None and worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            _end_processes_in(name)
            forget_namespace_state(inode)
            result = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"bench: could not delete namespace {name}: {result.stderr.strip()}; "
                      f"delete it with: ip netns del {name}", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def forget_namespace_state(inode: int) -> None:
    """Remove what the hooks keep under /run/qemu-ifhooks for the namespace with this
    inode: its locks, attachment records and the mark that port security was used
    there. The kernel gives a later namespace the same inode, which would inherit them:
    a stale mark alone makes every plain ifup look for a killed VM's rules."""
    for pattern in (f"{RUN_DIR}/{inode}-*", f"{RUN_DIR}/attached/{inode}-*"):
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _end_processes_in(name):
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                          text=True).stdout.split()
    for pid in map(int, pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        print(f"bench: ended {len(pids)} leftover process(es) in {name}: {' '.join(pids)}",
              file=sys.stderr)
        time.sleep(0.2)


def make_hook_dir(workdir: Path) -> None:
    """The hook in both install forms: packaging/qemu-ifhook with its @PYTHONDIR@ set to
    this checkout and the two entries QEMU runs, symlinks to it (in hooks/); and the
    launchers `qemu-ifhooks install` writes, for Debian's python3 and this checkout
    (in hooks/installed/)."""
    source = (CHECKOUT / "packaging" / "qemu-ifhook").read_text()
    if "@PYTHONDIR@" not in source:
        raise SystemExit("bench: packaging/qemu-ifhook has no @PYTHONDIR@ to fill in")
    hooks = workdir / "hooks"
    hooks.mkdir()
    program = hooks / "qemu-ifhook"
    program.write_text(source.replace("@PYTHONDIR@", str(CHECKOUT)))
    program.chmod(0o755)
    for entry in (f"ifup-{BRIDGE}", f"ifdown-{BRIDGE}", f"ifup-{PLAIN}", f"ifup-{GUARDED}",
                  f"ifup-{VXLAN_BRIDGE}"):
        (hooks / entry).symlink_to("qemu-ifhook")
    # The floor of a Python hook as QEMU runs it: the interpreter started the hook's way,
    # doing nothing (the TAP stays off the bridge).
    interpreter = hooks / "interpreter-only"
    interpreter.write_text(f"#!{PYTHON} -IS\n")
    interpreter.chmod(0o755)
    sys.path.insert(0, str(CHECKOUT))
    from qemu_ifhooks.install import launcher

    (hooks / "installed").mkdir()
    for entry in (f"ifup-{BRIDGE}", f"ifdown-{BRIDGE}"):
        path = hooks / "installed" / entry
        path.write_text(launcher(PYTHON, str(CHECKOUT)))
        path.chmod(0o755)
    config = workdir / "qemu-ifhooks.toml"
    config.write_text(CONFIG)
    config.chmod(0o644)  # owned by root, not group/other-writable: the hook checks


def cpu_times() -> list:
    """The machine's CPU time so far by kind (/proc/stat: user nice system idle iowait irq
    softirq steal), to tell how busy the machine was besides the benchmark."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def describe_cpu_use(before, after) -> str:
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta) or 1
    busy = total - delta[3] - delta[4]
    return (f"{100 * busy / total:.0f}% busy, {100 * delta[7] / total:.1f}% stolen by the "
            f"hypervisor (all CPUs, the benchmark included; from /proc/stat)")


def describe_machine(args, argv) -> dict:
    def out(command):
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  cwd=CHECKOUT).stdout.rstrip()
        except OSError:
            return ""

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    changed = out(["git", "status", "--porcelain"]).splitlines()
    if commit != "unknown" and changed:
        # the hooks measured are the working tree's: say where it differs from the commit
        where = sorted({line[3:].split("/")[0] + ("/" if "/" in line[3:] else "")
                        for line in changed})
        commit += f"-dirty (uncommitted changes in {', '.join(where)})"
    version_of = ("import importlib.metadata as m, sys\n"
                  "try: print(m.version(sys.argv[1]))\n"
                  "except Exception: print('not installed')\n")
    command = f"`{' '.join([PYTHON, 'bench/run.py', *argv])}`"
    if os.environ.get("MAKELEVEL"):  # started by the Makefile's bench target
        command = f"`sudo make bench`, which runs {command}"
    return {
        "host": socket.gethostname(),
        "cpu": cpu or "unknown",
        "nproc": os.cpu_count(),
        "kernel": os.uname().release,
        "python": out([PYTHON, "--version"]),
        "iproute2": out(["ip", "-V"]),
        "pyroute2": out([PYTHON, "-c", version_of, "pyroute2"]),
        "matplotlib": out([PYTHON, "-c", version_of, "matplotlib"]),
        "qemu_system_common": out(["dpkg-query", "-W", "-f", "${Version}",
                                   "qemu-system-common"]) or "unknown",
        "syslog": "present" if os.path.exists("/dev/log") else
                  "absent (no /dev/log: the hook's syslog lines go nowhere)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "command": command,
        "quick": args.quick,
        "runs": args.runs,
        "warmup": args.warmup,
    }


# --------------------------------------------------------------------------------------
# Worker: inside the namespace
# --------------------------------------------------------------------------------------

class Runner:
    """Runs one process and times it from the parent: perf_counter around posix_spawn and
    wait4, so fork/exec, interpreter start-up and exit are all in the figure.

    Not the peak RSS: a child spawned from this process starts on its mm (vfork) or a
    copy of it (fork), and the kernel keeps that high-water mark across exec, so its
    ru_maxrss would be this harness's. Worker.measure_memory asks GNU time instead."""

    def __init__(self, workdir: Path, env: dict):
        self.env = env
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.output_path = workdir / "output"
        self.output = os.open(self.output_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                              0o600)
        self.live = set()  # PIDs spawned and not yet reaped, ended on the way out

    def run(self, argv) -> dict:
        """One timed run; raises Broken with the process's output if it exits non-zero."""
        os.ftruncate(self.output, 0)
        actions = [(os.POSIX_SPAWN_DUP2, self.devnull, 0),
                   (os.POSIX_SPAWN_DUP2, self.output, 1),
                   (os.POSIX_SPAWN_DUP2, self.output, 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
        self.live.add(pid)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        self.live.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            output = Path(self.output_path).read_text(errors="replace").strip()
            raise Broken(f"{' '.join(map(str, argv))} exited {code}: {output or '(no output)'}")
        return {"ms": elapsed * 1000}

    def spawn_many(self, argvs, output_dir: Path) -> list:
        """Start every command at once, then reap them all; each one's wall time runs from
        just before its own spawn to its reap."""
        started = {}
        for argv in argvs:
            out = str(output_dir / os.path.basename(argv[-1]))
            actions = [(os.POSIX_SPAWN_DUP2, self.devnull, 0),
                       (os.POSIX_SPAWN_OPEN, 2, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       (os.POSIX_SPAWN_DUP2, 2, 1)]
            start = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
            self.live.add(pid)
            started[pid] = (argv, start, out)
        done = []
        while started:
            pid, status = os.waitpid(-1, 0)
            end = time.perf_counter()
            if pid not in started:
                continue
            argv, start, out = started.pop(pid)
            self.live.discard(pid)
            done.append({"tap": argv[-1], "start": start, "end": end,
                         "ms": (end - start) * 1000,
                         "code": os.waitstatus_to_exitcode(status),
                         "output": Path(out).read_text(errors="replace").strip()})
        return done

    def end_live(self) -> None:
        for pid in list(self.live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.live.discard(pid)


class Net:
    """The namespace's links, through iproute2 (never the project's code): setting up,
    resetting between runs (untimed) and checking what a hook left behind."""

    def __init__(self, workdir: Path):
        self.ip = shutil.which("ip")
        self.batch_file = workdir / "ip.batch"

    def __call__(self, *args) -> None:
        result = subprocess.run([self.ip, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise Broken(f"ip {' '.join(args)}: {result.stderr.strip()}")

    def json(self, *args):
        result = subprocess.run([self.ip, "-j", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise Broken(f"ip -j {' '.join(args)}: {result.stderr.strip()}")
        return json.loads(result.stdout or "[]")

    def batch(self, lines) -> None:
        lines = list(lines)
        if not lines:
            return
        self.batch_file.write_text("".join(line + "\n" for line in lines))
        result = subprocess.run([self.ip, "-batch", str(self.batch_file)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise Broken(f"ip -batch ({len(lines)} lines, first: {lines[0]!r}): "
                         f"{result.stderr.strip()}")

    def links(self) -> dict:
        return {link["ifname"]: link for link in self.json("link", "show")}

    def state(self, dev):
        link = self.json("link", "show", "dev", dev)[0]
        return link.get("master"), "UP" in link.get("flags", [])

    def expect_attached(self, dev, after, bridge=BRIDGE) -> None:
        master, up = self.state(dev)
        if master != bridge or not up:
            raise Broken(f"after {after}: {dev} has master {master or 'none'} and is "
                         f"{'UP' if up else 'down'}; expected master {bridge} and UP")

    def expect_detached(self, dev, after) -> None:
        master, up = self.state(dev)
        if master is not None or up:
            raise Broken(f"after {after}: {dev} has master {master or 'none'} and is "
                         f"{'UP' if up else 'down'}; expected no master and down")

    def detach(self, dev) -> None:
        self("link", "set", "dev", dev, "nomaster", "down")

    def attach(self, dev) -> None:
        self("link", "set", "dev", dev, "master", BRIDGE, "up")

    def ports(self, bridge=BRIDGE) -> int:
        return len(self.json("link", "show", "master", bridge))

    def add_taps(self, names) -> None:
        self.batch(f"tuntap add dev {name} mode tap" for name in names)


class Worker:
    def __init__(self, args):
        self.args = args
        self.workdir = args.workdir
        hooks = self.workdir / "hooks"
        self.ifup = str(hooks / f"ifup-{BRIDGE}")
        self.ifdown = str(hooks / f"ifdown-{BRIDGE}")
        self.ifup_vxlan = str(hooks / f"ifup-{VXLAN_BRIDGE}")
        self.installed = {"ifup": str(hooks / "installed" / f"ifup-{BRIDGE}"),
                          "ifdown": str(hooks / "installed" / f"ifdown-{BRIDGE}")}
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "QEMU_IFHOOKS_CONFIG": str(self.workdir / "qemu-ifhooks.toml")}
        self.runner = Runner(self.workdir, env)
        self.net = Net(self.workdir)
        self.ip = self.net.ip
        self.time = GNU_TIME
        self.latency_taps = {"ours": "lat-ours", "debian": "lat-debian", "naive": "lat-naive",
                             "installed": "lat-inst", "vxlan": "lat-vxlan"}
        self.burst_taps = []
        self.results = {"latency": {}, "ifdown": {}, "reference": {}, "scaling": [],
                        "burst": [], "broken": [], "notes": [], "vm_start": {}}

    def log(self, message) -> None:
        print(f"bench: {message}", flush=True)

    # -- set-up ----------------------------------------------------------------------

    def setup(self) -> None:
        """lo, the veth uplink with GRO on (veth starts with it off, and the hook refuses
        such an uplink), br0 made by one run of our hook, then the address and default
        route that Debian's qemu-ifup looks for."""
        net = self.net
        net("link", "set", "dev", "lo", "up")
        net("link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_PEER)
        net("link", "set", "dev", UPLINK, "up")
        net("link", "set", "dev", UPLINK_PEER, "up")
        result = subprocess.run(["ethtool", "-K", UPLINK, "gro", "on"], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise Broken(f"ethtool -K {UPLINK} gro on: {result.stderr.strip()}")
        net.add_taps(self.latency_taps.values())
        net.add_taps(GUARD_TAPS.values())
        first = self.latency_taps["ours"]
        self.runner.run([self.ifup, first])
        net.expect_attached(first, f"the first ifup-{BRIDGE} {first} (creating {BRIDGE})")
        master, _ = net.state(UPLINK)
        if master != BRIDGE:
            raise Broken(f"{BRIDGE} was created without its uplink {UPLINK}")
        net.detach(first)
        self.address_bridge()
        # The VXLAN segment, built by its first ifup (bridge, VXLAN link, flood list).
        net("address", "add", f"{VXLAN_LOCAL}/24", "dev", UPLINK_PEER)
        tap = self.latency_taps["vxlan"]
        self.runner.run([self.ifup_vxlan, tap])
        net.expect_attached(tap, f"the first ifup-{VXLAN_BRIDGE} {tap}", VXLAN_BRIDGE)
        net.detach(tap)

    def address_bridge(self) -> None:
        self.net("link", "set", "dev", BRIDGE, "up")
        self.net("address", "replace", BRIDGE_ADDRESS, "dev", BRIDGE)
        self.net("route", "replace", "default", "via", GATEWAY, "dev", BRIDGE)

    # -- the contenders: each leaves its TAP detached and down -------------------------

    def ours_ifup(self, tap):
        sample = self.runner.run([self.ifup, tap])
        self.net.expect_attached(tap, f"ifup-{BRIDGE} {tap}")
        self.net.detach(tap)
        return sample

    def vxlan_ifup(self, tap):
        sample = self.runner.run([self.ifup_vxlan, tap])
        self.net.expect_attached(tap, f"ifup-{VXLAN_BRIDGE} {tap}", VXLAN_BRIDGE)
        self.net.detach(tap)
        return sample

    def debian_ifup(self, tap):
        sample = self.runner.run([DEBIAN_IFUP, tap])
        self.net.expect_attached(tap, f"{DEBIAN_IFUP} {tap}")
        self.net.detach(tap)
        return sample

    def naive_ifup(self, tap):
        sample = self.runner.run([str(NAIVE_HOOK), tap])
        self.net.expect_attached(tap, f"{NAIVE_HOOK.name} {tap}")
        self.net.detach(tap)
        return sample

    def ours_ifdown(self, tap):
        self.net.attach(tap)
        sample = self.runner.run([self.ifdown, tap])
        self.net.expect_detached(tap, f"ifdown-{BRIDGE} {tap}")
        return sample

    def installed_ifup(self, tap):
        sample = self.runner.run([self.installed["ifup"], tap])
        self.net.expect_attached(tap, f"installed ifup-{BRIDGE} {tap}")
        self.net.detach(tap)
        return sample

    def installed_ifdown(self, tap):
        self.net.attach(tap)
        sample = self.runner.run([self.installed["ifdown"], tap])
        self.net.expect_detached(tap, f"installed ifdown-{BRIDGE} {tap}")
        return sample

    def floor(self):
        return self.runner.run([PYTHON, "-IS", "-c", "pass"])

    def guard_ifup(self, which):
        """ifup on the plain or the guarded bridge; then, untimed, the TAP detached and
        the guarded one's rules and ifb devices removed, so that every round starts
        from a TAP with none."""
        tap, bridge = GUARD_TAPS[which], PLAIN if which == "plain" else GUARDED
        sample = self.runner.run([str(self.workdir / "hooks" / f"ifup-{bridge}"), tap])
        master, up = self.net.state(tap)
        if master != bridge or not up:
            raise Broken(f"ifup-{bridge} {tap}: master {master}, up {up}")
        self.net.detach(tap)
        if which == "guarded":
            subprocess.run(["nft", f"delete element bridge qemu_ifhooks ports {{ \"{tap}\" }}; "
                            f"delete chain bridge qemu_ifhooks port_{tap}"], check=True)
            self.net.batch([f"link del dev {d}-{tap}" for d in ("rx", "tx")])
        return sample

    def measure_guarded(self) -> None:
        self.log("latency, ifup: a plain bridge against port security ip + isolation + both limits")
        self.results["guarded"] = self.alternate([
            ("plain", lambda: self.guard_ifup("plain")),
            ("guarded", lambda: self.guard_ifup("guarded")),
        ])

    def debian_ifdown(self, tap):
        self.net.attach(tap)
        sample = self.runner.run([DEBIAN_IFDOWN, tap])
        self.net.detach(tap)  # qemu-ifdown leaves it to the kernel; we reset it, untimed
        return sample

    def debian_ifdown_plus_ip(self, tap):
        """qemu-ifdown, then the one `ip` call that would do the detaching: both timed,
        each as its own process; the row is their sum (the ip call alone is kept too)."""
        self.net.attach(tap)
        script = self.runner.run([DEBIAN_IFDOWN, tap])
        ip = self.runner.run([self.ip, "link", "set", "dev", tap, "nomaster", "down"])
        self.net.expect_detached(tap, f"{DEBIAN_IFDOWN} + ip link set dev {tap} nomaster down")
        self.ip_alone.append(ip)
        return {"ms": script["ms"] + ip["ms"]}

    # -- measurements ------------------------------------------------------------------

    def alternate(self, contenders, runs=None, warmup=None) -> dict:
        """Warm-up, then timed rounds; each round runs every contender once, in an order
        shuffled from round to round (with a fixed seed, so that a run can be repeated).
        Not rotated: in a rotation each contender would always follow the same one, and
        the one after the pyroute2 hook (250 ms of work) would always pay for it.
        Returns each contender's samples as lists: {"ms": [...], ...}."""
        runs = self.args.runs if runs is None else runs
        warmup = self.args.warmup if warmup is None else warmup
        samples = {name: [] for name, _ in contenders}
        shuffled = random.Random(SEED)
        for round_ in range(warmup + runs):
            for name, once in shuffled.sample(contenders, len(contenders)):
                sample = once()
                if round_ >= warmup:
                    samples[name].append(sample)
        return {name: {key: [sample[key] for sample in got] for key in got[0]}
                for name, got in samples.items()}

    def measure_reference(self) -> None:
        self.log("reference: interpreter start-up and one ip call")
        run = self.runner.run
        self.results["reference"] = self.alternate([
            ("python3 -I -S -c pass", lambda: run([PYTHON, "-I", "-S", "-c", "pass"])),
            ("python3 -c pass", lambda: run([PYTHON, "-c", "pass"])),
            ("ip link set dev lo up", lambda: run([self.ip, "link", "set", "dev", "lo", "up"])),
        ])

    def measure_ifup(self) -> None:
        self.log(f"latency, ifup: our hook / {DEBIAN_IFUP} / naive pyroute2 hook, alternating, "
                 f"{self.args.warmup} warm-up + {self.args.runs} runs each")
        taps = self.latency_taps
        self.results["latency"] = self.alternate([
            ("ours", lambda: self.ours_ifup(taps["ours"])),
            ("debian", lambda: self.debian_ifup(taps["debian"])),
            ("naive", lambda: self.naive_ifup(taps["naive"])),
            ("installed", lambda: self.installed_ifup(taps["installed"])),
            ("vxlan", lambda: self.vxlan_ifup(taps["vxlan"])),
            ("floor", self.floor),  # in every round: the ratios are per round
        ])

    def measure_ifdown(self) -> None:
        self.log(f"latency, ifdown: our hook / {DEBIAN_IFDOWN} / {DEBIAN_IFDOWN} + one ip call")
        taps = self.latency_taps
        self.ip_alone = []
        got = self.alternate([
            ("ours", lambda: self.ours_ifdown(taps["ours"])),
            ("debian", lambda: self.debian_ifdown(taps["debian"])),
            ("debian+ip", lambda: self.debian_ifdown_plus_ip(taps["naive"])),
            ("installed", lambda: self.installed_ifdown(taps["installed"])),
            ("floor", self.floor),
        ])
        timed = self.ip_alone[-self.args.runs:]  # the warm-up rounds' calls are dropped
        got["ip"] = {"ms": [s["ms"] for s in timed]}
        self.results["ifdown"] = got

    def peak_rss(self, argv, tap=None, after=None) -> dict:
        """Peak RSS (KiB) of one run, as GNU time reports it: time forks the command from
        its own small process, so the figure is the command's, not this harness's."""
        report = self.workdir / "maxrss"
        self.runner.run([self.time, "-f", "%M", "-o", str(report), *argv])
        if tap is not None:
            self.net.expect_attached(tap, after)
            self.net.detach(tap)
        return {"maxrss_kib": int(report.read_text().split()[-1])}

    def measure_memory(self) -> None:
        runs = self.args.memory_runs
        self.log(f"memory: peak RSS of {runs} runs each, by GNU time")
        taps = self.latency_taps
        rss = self.peak_rss
        self.results["memory"] = self.alternate([
            ("ours", lambda: rss([self.ifup, taps["ours"]], taps["ours"], f"ifup-{BRIDGE}")),
            ("debian", lambda: rss([DEBIAN_IFUP, taps["debian"]], taps["debian"], DEBIAN_IFUP)),
            ("naive", lambda: rss([str(NAIVE_HOOK), taps["naive"]], taps["naive"],
                                  NAIVE_HOOK.name)),
            ("python3 -I -S -c pass", lambda: rss([PYTHON, "-I", "-S", "-c", "pass"])),
            ("sh -c :", lambda: rss(["/bin/sh", "-c", ":"])),
        ], runs=runs, warmup=1)

    def measure_burst(self, label, bridge_present) -> None:
        n = self.args.burst
        taps = [f"burst{i:03d}" for i in range(n)]
        net = self.net
        if self.burst_taps != taps:
            net.add_taps(taps)
            self.burst_taps = taps
        if not bridge_present:
            net("link", "del", BRIDGE)
        net.batch(f"link set dev {tap} nomaster down" for tap in taps)
        self.log(f"burst ({label}): {n} ifup hooks started at once")
        outdir = self.workdir / f"burst-{'present' if bridge_present else 'absent'}"
        outdir.mkdir()
        done = self.runner.spawn_many([[self.ifup, tap] for tap in taps], outdir)
        links = net.links()
        attached = [tap for tap in taps if links.get(tap, {}).get("master") == BRIDGE
                    and "UP" in links.get(tap, {}).get("flags", [])]
        failed = [d for d in done if d["code"] != 0]
        entry = {
            "label": label, "bridge_present": bridge_present, "hooks": n,
            "succeeded": n - len(failed), "attached": len(attached),
            "total_ms": (max(d["end"] for d in done) - min(d["start"] for d in done)) * 1000,
            "ms": [d["ms"] for d in done],
            "exit_codes": sorted({d["code"] for d in done}),
            "lock_timeouts": sum(d["code"] == 75 for d in done),
            "failures": [f"{d['tap']}: exit {d['code']}: {d['output'] or '(no output)'}"
                         for d in failed][:10],
            "uplink_on_bridge": links.get(UPLINK, {}).get("master") == BRIDGE,
        }
        self.results["burst"].append(entry)
        if failed or len(attached) != n or not entry["uplink_on_bridge"]:
            self.results["broken"].append(
                f"burst ({label}): {entry['succeeded']}/{n} hooks exited 0, {len(attached)}/{n} "
                f"TAPs attached and up, uplink on {BRIDGE}: {entry['uplink_on_bridge']}"
                + "".join(f"\n    {line}" for line in entry["failures"]))
        # the next steps want the burst TAPs detached and br0 addressed again
        net.batch(f"link set dev {tap} nomaster down" for tap in taps)
        if BRIDGE in links:
            self.address_bridge()

    def measure_scaling(self) -> None:
        """Our ifup (and Debian's, alternating) with N TAPs already enslaved, N growing;
        then with the same links in the namespace but on no bridge."""
        net = self.net
        net.batch(f"link del dev {tap}" for tap in self.burst_taps)
        test = {"ours": "scale-ours", "debian": "scale-debian"}
        net.add_taps(test.values())
        # br0 already holds the uplink; one slot stays free for the TAP under test
        br0_room = BRIDGE_MAX_PORTS - net.ports() - 1
        created = 0
        pool = []
        extra_bridges = []
        for size in sorted(self.args.sizes):
            names = [f"s{i:04d}" for i in range(created, size)]
            net.add_taps(names)
            created = size
            pool += names
            on_br0 = pool[:br0_room]
            rest = pool[br0_room:]
            lines = [f"link set dev {tap} master {BRIDGE}" for tap in names if tap in set(on_br0)]
            # what br0 cannot take goes to further bridges, as full as br0 at most
            per_bridge = BRIDGE_MAX_PORTS - 1
            needed = -(-len(rest) // per_bridge)
            for k in range(len(extra_bridges), needed):
                extra_bridges.append(f"sbr{k + 1}")
                lines.insert(0, f"link add {extra_bridges[-1]} type bridge")
            new = set(names)
            for j, tap in enumerate(rest):
                if tap in new:
                    lines.append(f"link set dev {tap} master {extra_bridges[j // per_bridge]}")
            self.log(f"scaling: {size} TAP(s) on bridges, {min(size, br0_room)} of them "
                     f"on {BRIDGE}")
            net.batch(lines)
            self.scaling_point(f"{size}", size, test, other_bridges=len(extra_bridges))
        # the same namespace, every TAP but the first off the bridges: links, not ports
        names = [f"s{i:04d}" for i in range(created, self.args.other_links + 1)]
        net.add_taps(names)
        pool += names
        net.batch([f"link set dev {tap} nomaster" for tap in pool[1:]]
                  + [f"link del dev {br}" for br in extra_bridges])
        other = len(pool) - 1
        self.log(f"scaling: 1 TAP on {BRIDGE}, {other} other TAPs on no bridge")
        self.scaling_point(f"1 + {other} other links", 1, test, other_links=other)

    def scaling_point(self, label, size, test, other_bridges=0, other_links=0) -> None:
        links = self.net.links()
        ports = sum(1 for link in links.values() if link.get("master") == BRIDGE)
        got = self.alternate([
            ("ours", lambda: self.ours_ifup(test["ours"])),
            ("debian", lambda: self.debian_ifup(test["debian"])),
        ])
        self.results["scaling"].append({
            "label": label, "taps_on_bridges": size, "other_links": other_links,
            "br0_ports": ports, "links": len(links), "other_bridges": other_bridges,
            "ours": got["ours"], "debian": got["debian"]})

    def vm_once(self, netdev: str, tap) -> dict:
        """QEMU with one NIC and no guest, quit at once on its monitor (which runs the
        downscript), timed as a whole. It runs in a private mount namespace whose /etc is
        an overlay holding qemu/bridge.conf for qemu-bridge-helper (Debian ships none):
        the host's /etc is never written. Every variant pays the same wrapper."""
        etc = self.workdir / "etc-overlay"
        setup = (f"mount -t tmpfs tmpfs {etc} && mkdir {etc}/u {etc}/u/qemu {etc}/w && "
                 f"echo 'allow {BRIDGE}' > {etc}/u/qemu/bridge.conf && "
                 f"mount -t overlay overlay -o lowerdir=/etc,upperdir={etc}/u,workdir={etc}/w "
                 f"/etc && exec \"$@\"")
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", setup, "sh",
                "qemu-system-x86_64", "-accel", "tcg", "-S", "-nodefaults", "-display", "none",
                "-monitor", "stdio", "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
        ports = self.net.ports()
        start = time.perf_counter()
        qemu = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=self.runner.env)
        _, err = qemu.communicate(b"quit\n", timeout=60)
        elapsed = time.perf_counter() - start
        if qemu.returncode != 0:
            raise Broken(f"QEMU with -netdev {netdev} exited {qemu.returncode}: "
                         f"{err.decode(errors='replace').strip()}")
        if tap is not None and tap in self.net.links():
            raise Broken(f"QEMU with -netdev {netdev} left {tap} behind")
        if self.net.ports() != ports:
            raise Broken(f"QEMU with -netdev {netdev} left {BRIDGE} with other ports")
        return {"ms": elapsed * 1000}

    def measure_vm_start(self) -> None:
        runs, warmup = min(self.args.runs, 20), min(self.args.warmup, 2)
        self.log(f"VM start: QEMU -S with one NIC, quit at once; {warmup} warm-up + {runs} "
                 f"runs each, alternating")
        (self.workdir / "etc-overlay").mkdir()
        tap = "vm-tap0"
        interpreter = self.workdir / "hooks" / "interpreter-only"

        def tap_with(up, down):
            return f"tap,id=n0,ifname={tap},script={up},downscript={down}"
        self.results["vm_start"] = self.alternate([
            ("script=no", lambda: self.vm_once(tap_with("no", "no"), tap)),
            ("qemu-bridge-helper", lambda: self.vm_once(f"bridge,id=n0,br={BRIDGE}", None)),
            ("debian", lambda: self.vm_once(tap_with(DEBIAN_IFUP, DEBIAN_IFDOWN), tap)),
            ("ours", lambda: self.vm_once(tap_with(self.ifup, self.ifdown), tap)),
            ("installed", lambda: self.vm_once(tap_with(self.installed["ifup"],
                                                        self.installed["ifdown"]), tap)),
            ("interpreter", lambda: self.vm_once(tap_with(interpreter, interpreter), tap)),
        ], runs=runs, warmup=warmup)

    def let_config_settle(self) -> None:
        config = self.workdir / "qemu-ifhooks.toml"
        wait = CONFIG_SETTLE_SECONDS - (time.time() - config.stat().st_mtime)
        if wait > 0:
            self.log(f"waiting {wait:.1f} s: the timed runs use a config at least "
                     f"{CONFIG_SETTLE_SECONDS:g} s old, as on a host")
            time.sleep(wait)

    def run(self) -> None:
        self.setup()
        self.let_config_settle()
        self.measure_reference()
        self.measure_ifup()
        self.measure_ifdown()
        self.measure_guarded()
        self.measure_memory()
        self.measure_vm_start()
        self.measure_burst(f"{BRIDGE} present", bridge_present=True)
        self.measure_burst(f"{BRIDGE} absent, created by the hooks", bridge_present=False)
        self.measure_scaling()
        self.results["bridge_max_ports"] = BRIDGE_MAX_PORTS
        self.results["config_settle_s"] = CONFIG_SETTLE_SECONDS
        (self.workdir / "results.json").write_text(json.dumps(self.results))


def netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def worker(args) -> int:
    # Safety: everything below changes links; it must never run in the namespace the
    # controller was started in, nor in any namespace but the one it created.
    here = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                          text=True).stdout.strip()
    if netns_inode() == args.parent_netns or here != args.namespace:
        print(f"bench: the worker is not in its own namespace {args.namespace} (it is in "
              f"{here or 'an unnamed one'}); refusing", file=sys.stderr)
        return 2
    names = [link["ifname"] for link in json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout)]
    if names != ["lo"]:
        print(f"bench: the namespace is not fresh ({', '.join(names)}); refusing",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    bench = Worker(args)
    try:
        bench.run()
        return 0
    except Broken as error:
        print(f"bench: BROKEN: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        bench.runner.end_live()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    try:
        return controller(args, argv)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
