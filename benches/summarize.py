#!/usr/bin/env python3
"""Tables and ratios from the last `cargo bench -p sotto-benches` run.

Reads criterion's results under target/criterion (the `new` estimates of
each benchmark, i.e. the last run) and prints, in Markdown: the median time
per iteration, messages/s and MB/s (10^6 bytes/s), and the same-run ratios
the benchmark targets are stated in.

    python3 benches/summarize.py [target/criterion]
"""

import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
SIZES = [64, 1024, 16384, 1048576]
# Messages per iteration of the benchmarks that measure one message per
# iteration but set no element throughput.
PING_PONG_MESSAGES = 2
RELAY_PAYLOAD = 314  # bytes per envelope, see benches/benches/relay.rs
STORE_BODY = 100  # bytes per message body, see benches/benches/store.rs


def load(group, *parts):
    path = os.path.join(ROOT, group, *parts, "new")
    try:
        with open(os.path.join(path, "estimates.json")) as f:
            estimates = json.load(f)
        with open(os.path.join(path, "benchmark.json")) as f:
            benchmark = json.load(f)
    except FileNotFoundError:
        return None
    median = estimates["median"]
    return {
        "ns": median["point_estimate"],
        "lo": median["confidence_interval"]["lower_bound"],
        "hi": median["confidence_interval"]["upper_bound"],
        "throughput": benchmark.get("throughput") or {},
    }


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def throughput_tables():
    rows = {}
    print("### Encryption throughput (encrypt + decrypt, median)\n")
    print("| benchmark | size | median / iteration | messages/s | MB/s (plaintext) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for group, impls, per_iter in [
        ("one_way", ["sotto", "vodozemac", "raw_aead"], 1),
        ("ping_pong", ["sotto", "vodozemac"], PING_PONG_MESSAGES),
    ]:
        for size in SIZES:
            for impl in impls:
                r = load(group, impl, str(size))
                if r is None:
                    continue
                msgs = per_iter * 1e9 / r["ns"]
                mbs = msgs * size / 1e6
                rows[(group, impl, size)] = msgs
                print(
                    f"| {group}/{impl} | {size} | {fmt_time(r['ns'])} "
                    f"[{fmt_time(r['lo'])}, {fmt_time(r['hi'])}] | {fmt_rate(msgs)} | {mbs:.1f} |"
                )
    print()
    print("### Same-run ratios (of median messages/s)\n")
    print("| size | one-way Sotto / vodozemac | one-way Sotto / raw AEAD | ping-pong Sotto / vodozemac |")
    print("| ---: | ---: | ---: | ---: |")
    for size in SIZES:
        def ratio(group, a, b):
            x, y = rows.get((group, a, size)), rows.get((group, b, size))
            return f"{x / y:.2f}" if x and y else "–"

        print(
            f"| {size} | {ratio('one_way', 'sotto', 'vodozemac')} "
            f"| {ratio('one_way', 'sotto', 'raw_aead')} "
            f"| {ratio('ping_pong', 'sotto', 'vodozemac')} |"
        )
    print()


def element_table(title, entries, payload):
    print(f"### {title}\n")
    print("| benchmark | median / iteration | messages/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    for group, parts in entries:
        r = load(group, *parts)
        if r is None:
            continue
        elements = r["throughput"].get("Elements", 1)
        msgs = elements * 1e9 / r["ns"]
        name = "/".join([group, *parts])
        print(
            f"| {name} | {fmt_time(r['ns'])} [{fmt_time(r['lo'])}, {fmt_time(r['hi'])}] "
            f"| {fmt_rate(msgs)} | {msgs * payload / 1e6:.2f} |"
        )
    print()


def plain_table(title, entries):
    print(f"### {title}\n")
    print("| benchmark | median | per second |")
    print("| --- | ---: | ---: |")
    for group, parts in entries:
        r = load(group, *parts)
        if r is None:
            continue
        print(
            f"| {group.replace('_', '/', 1)} | {fmt_time(r['ns'])} "
            f"[{fmt_time(r['lo'])}, {fmt_time(r['hi'])}] | {fmt_rate(1e9 / r['ns'])} |"
        )
    print()


def main():
    throughput_tables()
    plain_table(
        "Handshake and session state",
        # criterion names the directory of `c.bench_function("a/b")` "a_b".
        [("x3dh_handshake", []), ("session_serialize", []), ("session_deserialize", [])],
    )
    element_table(
        f"Store ({STORE_BODY}-byte bodies; MB/s of bodies)",
        [
            ("store_receive", ["receive"]),
            ("store_receive", ["receive_batch", "100"]),
            ("store_receive", ["receive_batch", "1000"]),
            ("store_history", ["page50", "newest"]),
            ("store_history", ["page50", "middle"]),
        ],
        STORE_BODY,
    )
    element_table(
        f"Relay on loopback ({RELAY_PAYLOAD}-byte envelopes)",
        [
            ("relay", ["send", "memory"]),
            ("relay", ["end_to_end", "memory"]),
            ("relay", ["send", "sqlite"]),
            ("relay", ["end_to_end", "sqlite"]),
        ],
        RELAY_PAYLOAD,
    )


if __name__ == "__main__":
    main()
