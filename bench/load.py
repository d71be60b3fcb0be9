"""How many people at once one yiweb process relays at a model's pace, and two behind Redis.

    python bench/load.py [--streams 100,300,500] [--deltas 500] [--interval-ms 20]
                         [--no-one-process] [--no-two-processes] [--quick] [--profile]

N signed-in websocket clients each send a first message whose answer is 500 deltas 20 ms
apart ([sim deltas=500 interval=20 stamp=1]; every chunk repeats the whole answer so far
in `content`, as the Yi API does). Setups, each fresh: one Daphne process of yiweb with
production settings, SQLite and the in-memory layer; then two processes sharing
PostgreSQL and Redis, clients split evenly between them. People sign up through the
real form before any clock starts. Measurement and reading: bench/common.py. Figures
and how to read them: docs/benchmarks.md. Results also go to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import (
    API_KEY,
    WARM_UP,
    Processes,
    Round,
    clean,
    cores,
    machine_describe,
    ms,
    parser_create,
    round_run,
    sessions_create,
    simulator_pids,
    stream_figures,
    yiweb_read,
    yiweb_stream,
)
from tests.live_server import (
    REDIS_TEST_URL,
    Socket,
    manage,
    postgres_database,
    production_env,
    running_app,
    sqlite_database,
)
from tests.simulator_server import running_simulator

RESULTS = REPO_ROOT / "bench" / "results" / "load.json"
TARGET_STREAMS = 500
TARGET_DELTA_P99_MS = 100.0
CLIENT_BUSY = 0.8  # cores: above this the client, not yiweb, may be what the figures show
# The simulator paces with asyncio.sleep, which overshoots by a little each time: idle, an
# answer takes ~5% longer than asked. Beyond 10% it fell behind.
SIMULATOR_SLACK = 1.10
OPEN_AT_ONCE = 50  # websocket handshakes in flight: Twisted's listen backlog is 50
PROFILE_TOP = 15
# What a sample was doing: the first of these functions found anywhere in its stack.
AREAS = {
    "Generation._send_loop": "generation: deltas into the channel layer",
    "InMemoryChannelLayer.send": "generation: deltas into the channel layer",
    "YiClient._stream_once": "generation: upstream SSE read and parse",
    "Generation.run": "generation: other",
    "await_many_dispatch": "consumers: layer messages out as websocket frames",
    "AsyncioSelectorReactor._readOrWrite": "Twisted socket reads and writes (websockets)",
    "_SelectorSocketTransport._read_ready": "asyncio socket reads (upstream, Redis)",
    "DatabaseSyncToAsync.thread_handler": "database thread",
}
# Frames under which everything runs: left out of the inclusive list, which is about yiweb.
# fmt: off
PLUMBING = {
    "<module>", "_run_module_as_main", "_run_code", "CommandLineInterface.entrypoint", "CommandLineInterface.run",
    "Server.run", "AsyncioSelectorReactor.run", "BaseEventLoop.run_forever", "BaseEventLoop._run_once",
    "Handle._run", "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker", "_WorkItem.run",
}
# fmt: on
# py-spy leaves out threads asleep in a system call, but not those waking up and waiting for
# the GIL: such samples end in the idle worker's loop or in the event loop's select.
WAITING = {"_worker", "EpollSelector.select"}


@dataclass
class Setup:
    name: str
    bases: list[str]  # yiweb processes; client i of N talks to bases[i * len(bases) // N]
    processes: Processes
    signup_threads: int


# --- the setups ----------------------------------------------------------------------


@contextlib.contextmanager
def one_process() -> Iterator[Setup]:
    with (
        running_simulator() as simulator_url,
        sqlite_database() as database_url,
        production_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY) as env,
    ):
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, app):
            # A sign-up hashes its password inside its write transaction, so SQLite takes them one
            # at a time; and its busy wait is not first come, first served: with more sign-ups
            # queued, one of them can wait past the client's 10 s.
            processes = Processes([app.pid], simulator_pids())
            yield Setup("1 process, SQLite, in-memory layer", [base], processes, signup_threads=2)


@contextlib.contextmanager
def two_processes() -> Iterator[Setup]:
    import redis

    # As tests/test_scale_out.py does: nothing left by an earlier run (with the list-based
    # layer, groups outlived their sockets for a day, and deltas went to dead channels too).
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    with (
        running_simulator() as simulator_url,
        postgres_database() as database_url,
        production_env(
            DATABASE_URL=database_url, REDIS_URL=REDIS_TEST_URL, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY
        ) as env,
    ):
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (first, app1), running_app(env) as (second, app2):
            processes = Processes([app1.pid, app2.pid], simulator_pids(), services=("redis-server", "postgres"))
            yield Setup("2 processes, PostgreSQL, Redis layer", [first, second], processes, signup_threads=4)


# --- a level: N sockets, one round -----------------------------------------------------


async def sockets_open(bases: list[str], sessions: list[str]) -> list[Socket]:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(i: int) -> Socket:
        async with gate:
            return await Socket.open(bases[i * len(bases) // len(sessions)], sessions[i])

    return await asyncio.gather(*(open_one(i) for i in range(len(sessions))))


@contextlib.contextmanager
def profiling(pid: int, path: Path, seconds: float) -> Iterator[None]:
    """py-spy on the yiweb process for the timed window only: started after the sockets
    are open, stopped (Ctrl-C, which makes it write) as soon as the round ends."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    command = [spy, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)), "--format", "raw"]
    process = subprocess.Popen(
        [*command, "--function", "--threads", "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # attaching takes a moment; the samples must cover the round's start
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
        if not path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')}")


async def level_run(setup: Setup, sessions: list[str], text: str, timeout: float, profile: Path | None) -> Round:
    # Tabs already open, as people's would be; each send starts a new conversation.
    sockets = await sockets_open(setup.bases, sessions)
    try:
        for i in range(len(setup.bases)):  # one short answer per process first
            await yiweb_stream(sockets[i * len(sockets) // len(setup.bases)], WARM_UP, timeout)
        with profiling(setup.processes.yiweb[0], profile, timeout) if profile else contextlib.nullcontext():
            return await round_run([yiweb_stream(s, text, timeout) for s in sockets], setup.processes)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def level_figures(setup: Setup, streams: int, round_: Round, args) -> dict:
    readings = [yiweb_read(capture) for capture in round_.captures]
    result = {"setup": setup.name, "streams": streams, **stream_figures(readings, [round_], args.deltas)}
    tokens = result["samples"]["tokens"]
    result["deltas_per_s"] = tokens / round_.wall
    result["deltas_per_s_asked"] = streams * 1000 / args.interval_ms
    result["cpu_s_per_1000_deltas"] = {name: cpu * 1000 / max(1, tokens) for name, cpu in round_.cpu.items()}
    result["emission_asked_s"] = (args.deltas - 1) * args.interval_ms / 1000
    return result


def setup_measure(setup_open, args) -> tuple[list[dict], list[dict]]:
    text = f"load benchmark [sim deltas={args.deltas} interval={args.interval_ms:g} stamp=1]"
    # A saturated process delivers a round a few times slower than it is emitted; beyond this,
    # a stream is reported failed rather than holding the benchmark lock for minutes.
    timeout = 30 + 4 * args.deltas * args.interval_ms / 1000
    results, profiles = [], []
    with setup_open() as setup:
        started = time.monotonic()
        sessions = sessions_create(setup.bases, max(args.streams), "load", setup.signup_threads)
        print(f"{setup.name}: {len(sessions)} people signed up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for streams in args.streams:
            time.sleep(1.0)  # let the last level's answers finish their writes
            profile = None
            if args.profile:
                label = f"{len(setup.bases)}p-{streams}"
                profile = RESULTS.parent / f"load-profile-{label}.txt"
            round_ = asyncio.run(level_run(setup, sessions[:streams], text, timeout, profile))
            results.append(level_figures(setup, streams, round_, args))
            if profile:
                profiles.append({"setup": setup.name, "streams": streams, **profile_summary(profile, round_.wall)})
            print(f"{setup.name}: {streams} streams measured", file=sys.stderr)
    return results, profiles


# --- the profile ---------------------------------------------------------------------


def frame_name(frame: str) -> str:
    """`send (httpx/_client.py:1629)` from py-spy's `send (/tmp/venv/lib/.../httpx/_client.py:1629)`."""
    name, _, where = frame.partition(" (")
    for root in ("site-packages/", "lib/python3.11/", str(REPO_ROOT) + "/"):
        where = where.split(root, 1)[-1]
    return f"{name} ({where.rstrip(')')})" if where else name


def profile_summary(path: Path, wall: float) -> dict:
    """Shares of the working samples (not WAITING) by area, by function itself (self) and
    with what it calls (inclusive), from py-spy's raw (collapsed) stacks."""
    own, inclusive, areas, threads, waiting, working = Counter(), Counter(), Counter(), Counter(), 0, 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        names = [frame_name(f) for f in stack.split(";") if not f.startswith("thread (")]
        functions = [n.partition(" ")[0] for n in names]
        count = int(count)
        if functions[-1] in WAITING:
            waiting += count
            continue
        working += count
        threads["event loop" if "BaseEventLoop.run_forever" in functions else "other threads"] += count
        areas[next((area for marker, area in AREAS.items() if marker in functions), "other")] += count
        own[names[-1]] += count
        for name, function in set(zip(names, functions)):
            if function not in PLUMBING:
                inclusive[name] += count
    return {
        "file": str(path.relative_to(REPO_ROOT)),
        "samples": working + waiting,
        # py-spy samples 100 times a second: 1.0 is one thread working the whole round
        "working": working / (100 * wall),
        "waiting": waiting / (100 * wall),
        "threads": {name: n / working for name, n in threads.most_common()},
        "areas": [(name, n / working) for name, n in areas.most_common()],
        "self": [(name, n / working) for name, n in own.most_common(PROFILE_TOP)],
        "inclusive": [(name, n / working) for name, n in inclusive.most_common(PROFILE_TOP)],
    }


# --- the report ----------------------------------------------------------------------


def targets_check(results: list[dict]) -> list[dict]:
    at = next((r for r in results if r["setup"].startswith("1 process") and r["streams"] == TARGET_STREAMS), None)
    if at is None:
        return []
    return [
        {
            "target": f"{TARGET_STREAMS} streams on one process: added delta p99 ≤ {TARGET_DELTA_P99_MS:g} ms",
            "streams": at["streams"],
            "value": ms(at["delta_ms"]["p99"]),
            "pass": at["delta_ms"]["p99"] <= TARGET_DELTA_P99_MS,
        },
        {
            "target": f"{TARGET_STREAMS} streams on one process: nothing lost",
            "streams": at["streams"],
            "value": f"{at['lost']} lost, {at['dup']} dup",
            "pass": clean(at),
        },
    ]


def warnings(r: dict) -> list[str]:
    label, busy, notes = f"  {r['streams']} on {r['setup'].split(',')[0]}:", r["cores_busy"], []
    if not clean(r):
        notes.append(
            f"{label} {r['seq_gaps']} seq gaps, {r['seq_repeats']} seq repeats, {r['text_mismatches']} texts and "
            f"{r['final_mismatches']} done contents not exact, {len(r['failures'])} failed {r['failures'][:3]}"
        )
    if busy["client"] > CLIENT_BUSY:
        notes.append(f"{label} the client was busy ({busy['client']:.2f} core): these figures may be the client's")
    if r["emission_s"] > r["emission_asked_s"] * SIMULATOR_SLACK:
        notes.append(
            f"{label} the simulator fell behind: an answer took {r['emission_s']:.1f} s to emit, not "
            f"{r['emission_asked_s']:.1f} s ({busy['simulator']:.2f} core busy)"
        )
    return notes


def report(results: list[dict], targets: list[dict], profiles: list[dict], machine: dict, args) -> str:
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    lines = [
        f"load: {args.deltas} deltas × {args.interval_ms:g} ms per stream, Daphne, production settings",
        (
            f"commit {machine['commit']}; machine: {machine['nproc']} cores, Python {machine['python']}, "
            f"load average {machine['load_before']:.2f} before the run{busy}; "
            f"speed probe {min(machine['speed_probe_ms']):g} to {max(machine['speed_probe_ms']):g} ms"
        ),
    ]
    for setup in dict.fromkeys(r["setup"] for r in results):
        lines += [
            f"{setup}",
            (
                f"{'streams':<9}{'ttft p50':>10}{'ttft p99':>10}{'delta p50':>11}{'delta p99':>11}{'lost':>8}{'dup':>5}"
                f"{'deltas/s':>10}{'of asked':>10}{'yiweb CPU/1k':>14}{'wall':>8}{'emitted':>9}"
                "   cores busy: client yiweb   sim  redis+pg"
            ),
        ]
        for r in (r for r in results if r["setup"] == setup):
            busy = r["cores_busy"]
            lines.append(
                f"{r['streams']:<9}{ms(r['ttft_ms']['p50']):>10}{ms(r['ttft_ms']['p99']):>10}"
                f"{ms(r['delta_ms']['p50']):>11}{ms(r['delta_ms']['p99']):>11}{r['lost']:>8}{r['dup']:>5}"
                f"{r['deltas_per_s']:>10.0f}{r['deltas_per_s'] / r['deltas_per_s_asked']:>10.0%}"
                f"{r['cpu_s_per_1000_deltas']['yiweb']:>12.3f} s{r['wall_s']:>7.1f}s{r['emission_s']:>8.1f}s"
                f"{'':>15}{cores(busy['client']):>6}{cores(busy['yiweb']):>6}{cores(busy['simulator']):>6}"
                f"{cores(busy.get('services', math.nan)):>10}"
            )
        lines += [note for r in results if r["setup"] == setup for note in warnings(r)]
    if not targets:
        lines.append(f"target: {TARGET_STREAMS} streams on one process, not measured in this run")
    else:
        lines += [f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}" for t in targets]
    for p in profiles:
        threads = ", ".join(f"{name} {n:.0%}" for name, n in p["threads"].items())
        lines.append(
            f"profile of {p['streams']} streams, {p['setup']}, first process ({p['file']}): {p['samples']} samples, "
            f"working {p['working']:.2f} and waiting for the GIL {p['waiting']:.2f} of the round; "
            f"shares of the working samples ({threads}):"
        )
        for kind in ("areas", "self", "inclusive"):
            lines.append(f"  {kind}:")
            lines += [f"    {share:>6.1%}  {name}" for name, share in p[kind]]
    return "\n".join(lines)


def results_write(results: list[dict], profiles: list[dict], machine: dict, args) -> list[dict]:
    """Merge this run's figures into the file, replacing only the same setup and level, so
    that a run split to keep the benchmark lock short still leaves one table. Returns the
    merged results. A profiled run keeps its figures beside its profile only: py-spy slows
    the process it samples."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    date = datetime.now(UTC).isoformat(timespec="seconds")
    run = {"date": date, "machine": machine, "argv": sys.argv[1:]}
    stamp = {"date": date, "deltas": args.deltas, "interval_ms": args.interval_ms}
    results = [{**stamp, **r} for r in results]
    if args.profile:
        profiles = [{**p, "figures": r} for p, r in zip(profiles, results)]
        results = []

    def merged(new: list[dict], before: list[dict]) -> list[dict]:
        def key(r):
            return r["setup"], r["streams"], r.get("deltas"), r.get("interval_ms")

        kept = [r for r in before if key(r) not in {key(n) for n in new}]
        return sorted(kept + new, key=lambda r: (r["setup"], r["deltas"], r["interval_ms"], r["streams"]))

    document = {"benchmark": "load", "runs": [*old.get("runs", []), run]}
    document["results"] = merged(results, old.get("results", []))
    document["targets"] = targets_check(
        [r for r in document["results"] if (r["deltas"], r["interval_ms"]) == (500, 20.0)]
    )
    document["profiles"] = merged([{**stamp, **p} for p in profiles], old.get("profiles", []))
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return document["results"]


def commit_describe() -> str:
    """The commit measured, with `+changes` when chat/ or yiweb/ differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=False, capture_output=True, text=True).stdout

    changed = git("status", "--porcelain", "chat", "yiweb").strip()
    return (git("rev-parse", "--short", "HEAD").strip() or "unknown") + (" +changes" if changed else "")


def main(argv: list[str] | None = None) -> int:
    parser = parser_create("Concurrent streams through one and two yiweb processes.", streams="100,300,500", interval_ms=20.0)
    parser.add_argument("--one-process", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--two-processes", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quick", action="store_true", help="20 and 50 streams of 100 deltas: a fast check")
    parser.add_argument("--profile", action="store_true", help="py-spy the (first) yiweb process during each round")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.deltas = [20, 50], 100
    started = time.monotonic()
    machine = {**machine_describe(), "commit": commit_describe()}
    results, profiles = [], []
    for wanted, setup_open in ((args.one_process, one_process), (args.two_processes, two_processes)):
        if wanted:
            measured, profiled = setup_measure(setup_open, args)
            results += measured
            profiles += profiled
    machine["load_after"] = os.getloadavg()[0]
    targets = targets_check(results)
    print(report(results, targets, profiles, machine, args))
    results_write(results, profiles, machine, args)
    print(f"figures: {RESULTS.relative_to(REPO_ROOT)}; whole run {time.monotonic() - started:.0f} s")
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
