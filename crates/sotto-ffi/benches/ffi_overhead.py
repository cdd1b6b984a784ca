"""The bindings' overhead: one send, one receive and one small call made
through the Python package, against the same calls made in Rust
(examples/ffi_overhead.rs), in one run, against one relay.

    cargo build --release -p sotto-relay --bin sotto-relay
    cargo build --release -p sotto-ffi --example ffi_overhead
    pip install crates/sotto-ffi            # a release build
    python crates/sotto-ffi/benches/ffi_overhead.py [N] [ROUNDS]

The relay keeps its mailboxes in memory (`--memory`): a send waits for
the relay's acceptance, and an fsync there would add milliseconds of
noise to microseconds of difference. Each round runs the Rust half and
then the Python half, each with two new
profiles on the relay (fast Argon2id, full durability, in a temporary
folder on /dev/shm when there is one), N calls of each kind. Reported: the median and 90th percentile
per call over all rounds, and the overhead (Python median minus Rust
median). A receive is reading one event already waiting (Rust:
`Events::next`; Python: `await client.next_event()`); a send is one
`send` of 32 bytes to a contact with a session, to the relay's
acceptance; `call` is `is_verified` and `task` a `history` page of one
message, both small store reads: the bindings poll the first where the
caller polls it and run the second (like `send`) as a task on their
runtime.
"""

import asyncio
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import sotto

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
FAST = sotto.ClientOptions(kdf_memory_kib=64, kdf_iterations=1)


def start_relay():
    relay = subprocess.Popen(
        [str(TARGET / "release" / "sotto-relay"), "--listen", "127.0.0.1:0",
         "--memory", "--log", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        # The relay's per-connection rate limit (100 requests/s after a
        # burst of 200) would pace the sends of a long run at 10 ms each:
        # lifted, as in the Rust relay benchmarks.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SOTTO_RELAY_")},
            "SOTTO_RELAY_RATE_LIMIT_REQUESTS_PER_SECOND": "1000000000",
            "SOTTO_RELAY_RATE_LIMIT_REQUEST_BURST": "1000000000",
            "SOTTO_RELAY_RATE_LIMIT_BYTES_PER_SECOND": "1000000000000",
            "SOTTO_RELAY_RATE_LIMIT_BYTE_BURST": "1000000000000",
        },
    )
    line = relay.stdout.readline().decode()
    if "listening on" not in line:
        relay.kill()
        raise RuntimeError(f"the relay did not start: {line!r}")
    return relay, line.split("listening on", 1)[1].split()[0]


async def next_message(client):
    while not (await client.next_event()).is_message():
        pass


async def python_half(relay, workdir, n):
    alice = await sotto.Client.create(str(workdir / "alice"), "bench", FAST)
    bob = await sotto.Client.create(str(workdir / "bob"), "bench", FAST)
    await alice.register(relay)
    await bob.register(relay)
    await alice.add_contact("bob", bob.address())
    await bob.add_contact("alice", alice.address())
    # A session, and Bob's access key at Alice's (his answer carries it).
    await alice.send("bob", b"hello")
    await next_message(bob)
    await bob.send("alice", b"hi")
    await next_message(alice)

    body = bytes([7]) * 32
    send = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await alice.send("bob", body)
        send.append(time.perf_counter_ns() - start)
    while len(await bob.history("alice", limit=n + 1)) < n + 1:
        await asyncio.sleep(0.02)
    receive = []
    while len(receive) < n:
        start = time.perf_counter_ns()
        event = await bob.next_event()
        took = time.perf_counter_ns() - start
        if event.is_message():
            receive.append(took)
    call = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await alice.is_verified("bob")
        call.append(time.perf_counter_ns() - start)
    task = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await alice.history("bob", limit=1)
        task.append(time.perf_counter_ns() - start)
    await alice.close()
    await bob.close()
    return {"send": send, "receive": receive, "call": call, "task": task}


def rust_half(relay, workdir, n):
    out = subprocess.run(
        [str(TARGET / "release" / "examples" / "ffi_overhead"), relay, str(workdir), str(n)],
        check=True, capture_output=True,
    )
    return json.loads(out.stdout)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    kinds = ("send", "receive", "call", "task")
    results = {"rust": {k: [] for k in kinds}, "python": {k: [] for k in kinds}}
    # On a RAM file system when there is one: a commit's fsync on a disk
    # varies by milliseconds, which would hide microseconds of overhead.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        tmp = pathlib.Path(tmp)
        relay, address = start_relay()
        try:
            for r in range(rounds):
                rust = rust_half(address, tmp / f"rust{r}", n)
                py = asyncio.run(python_half(address, tmp / f"py{r}", n))
                for kind in results["rust"]:
                    results["rust"][kind] += rust[kind]
                    results["python"][kind] += py[kind]
        finally:
            relay.terminate()
            relay.wait()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {rounds} rounds x {n} calls")
    print(f"{'call':<10} {'Rust p50':>10} {'p90':>10} {'Python p50':>11} {'p90':>10} {'overhead':>10}")
    for kind in kinds:
        rs, py = results["rust"][kind], results["python"][kind]
        rs50, py50 = statistics.median(rs) / 1000, statistics.median(py) / 1000
        print(f"{kind:<10} {rs50:>8.1f}us {percentile(rs, 0.9) / 1000:>8.1f}us "
              f"{py50:>9.1f}us {percentile(py, 0.9) / 1000:>8.1f}us {py50 - rs50:>8.1f}us")


if __name__ == "__main__":
    main()
