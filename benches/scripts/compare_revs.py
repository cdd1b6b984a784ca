#!/usr/bin/env python3
"""Same-session ratios of one criterion benchmark between two commits.

Builds the bench target `BENCH` of sotto-benches at `BASE` (a git worktree
under target/compare, with this checkout's copy of benches/benches/BENCH.rs,
so both sides run exactly the same measurement code against their own
crates) and in this checkout, then runs the two binaries in alternation,
ROUNDS times each, order reversed every round, and prints each benchmark's
median time per side and the ratio base / current (above 1: the current
code is faster). Alternating runs in one session lets load from other
processes fall on both sides alike.

    python3 benches/scripts/compare_revs.py BASE BENCH FILTER [ROUNDS]

For example, the store's hot path against the commit before a change:

    python3 benches/scripts/compare_revs.py aa75d1a store 'store_receive/(receive|receive_normal|send)$' 5
"""

import os
import re
import subprocess
import sys
import statistics

ROOT = subprocess.run(
    ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
).stdout.strip()


def build(checkout, bench, target_dir):
    """Builds the bench binary in `checkout`; returns its path."""
    out = subprocess.run(
        [
            "cargo", "bench", "-p", "sotto-benches", "--bench", bench,
            "--no-run", "--message-format=json",
        ],
        cwd=checkout,
        env={**os.environ, "CARGO_TARGET_DIR": target_dir},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"build failed in {checkout}:\n{out.stderr[-4000:]}")
    for line in out.stdout.splitlines():
        if f'"name":"{bench}"' in line and '"executable":"' in line:
            return re.search(r'"executable":"([^"]+)"', line).group(1)
    sys.exit(f"no executable for bench {bench} in {checkout}")


UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def run(binary, pattern):
    """Runs one criterion pass; returns {benchmark: median ns}."""
    out = subprocess.run(
        [binary, "--bench", "--noplot", "--measurement-time", "3", "--warm-up-time", "1",
         pattern],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    results = {}
    name = None
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+time:\s+\[(.*)\]", line)
        if m is None and line.strip() and not line.startswith(" "):
            name = line.split()[0]
        m = m or re.match(r"^\s+time:\s+\[(.*)\]", line)
        if m:
            if m.lastindex == 2:
                name, values = m.group(1), m.group(2)
            else:
                values = m.group(1)
            parts = values.split()
            if "%" in values or len(parts) < 4 or parts[3] not in UNITS:
                continue  # criterion's change against its last run
            results[name] = float(parts[2]) * UNITS[parts[3]]
    return results


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    base, bench, pattern = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    tree = os.path.join(ROOT, "target", "compare", "base")
    if os.path.exists(tree):
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", tree, base], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        src = os.path.join(ROOT, "benches", "benches", f"{bench}.rs")
        with open(src) as f, open(os.path.join(tree, "benches", "benches", f"{bench}.rs"), "w") as g:
            g.write(f.read())
        base_bin = build(tree, bench, os.path.join(ROOT, "target", "compare", "target"))
        current_bin = build(ROOT, bench, os.path.join(ROOT, "target"))
        samples = {}
        for r in range(rounds):
            order = [("base", base_bin), ("current", current_bin)]
            if r % 2:
                order.reverse()
            for side, binary in order:
                for name, ns in run(binary, pattern).items():
                    samples.setdefault(name, {"base": [], "current": []})[side].append(ns)
        print(f"base {base} against the current checkout, {rounds} alternating rounds")
        print("| benchmark | base (median) | current (median) | base / current |")
        print("| --- | --- | --- | --- |")
        for name, s in sorted(samples.items()):
            if not s["base"] or not s["current"]:
                continue
            b, c = statistics.median(s["base"]), statistics.median(s["current"])
            ratios = sorted(x / y for x, y in zip(s["base"], s["current"]))
            print(f"| {name} | {b / 1e3:.1f} µs | {c / 1e3:.1f} µs | {b / c:.2f} "
                  f"(rounds {ratios[0]:.2f}–{ratios[-1]:.2f}) |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT)


if __name__ == "__main__":
    main()
