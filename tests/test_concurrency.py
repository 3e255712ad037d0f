"""Many VMs start at once: hooks race to build the same missing bridge."""

from __future__ import annotations

import subprocess

from conftest import SEED_CONFIG

HOOKS_AT_ONCE = 64


def test_64_hooks_at_once_build_one_bridge_and_attach_every_tap(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(SEED_CONFIG)
    taps = [f"tap{i}" for i in range(HOOKS_AT_ONCE)]
    netns.hold_taps(*taps)
    entry = str(hooks.entry("ifup-br0"))
    env = hooks.env()
    running = [netns.popen(entry, tap, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for tap in taps]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in running]
    for p in running:
        p.stdout.close()
        p.stderr.close()

    assert [r for r in results if r != (0, "")] == []
    assert netns.ports("br0") == sorted(taps + ["eth0"])
    creations = [l for l in hooks.log_lines() if "ip link add br0" in l]
    assert len(creations) == 1, creations
    oks = [l for l in hooks.log_lines() if "action=ifup" in l and "result=ok" in l]
    assert len(oks) == HOOKS_AT_ONCE
    assert netns.link("br0")["address"] == netns.link("eth0")["address"]
