"""What a person feels of yiweb's relay path, beside the floor of reading the upstream directly.

    python bench/relay.py [--streams 1,50] [--deltas 500] [--interval-ms 2]

One Daphne process of yiweb on its embedded defaults (SQLite in a temp folder, the
in-memory channel layer) relays answers of the Yi API simulator, which runs as its own
process. The simulator's `stamp=1` directive writes into every delta the time it left,
so on this one machine (one clock) each token's added latency is simply the time the
client received it minus that stamp. The floor is the same kind of client reading the
simulator's SSE stream itself, at the same concurrency. Figures: docs/benchmarks.md.
Results also go to bench/results/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx
import websockets

from tests.live_server import Socket, app_env, manage, running_app, signup, sqlite_database
from tests.simulator_server import running_simulator

RESULTS = REPO_ROOT / "bench" / "results" / "relay.json"
API_KEY = "sk-bench"
MODEL = "yi-large"
WARM_UP = "warm-up [sim deltas=5 interval=0 stamp=1]"
TOKEN = re.compile(r"t(\d+)@(\d+\.\d+) ")
# Frames are JSON with "type" first (the consumer's json.dumps keeps key order), so the
# receive loop can spot the last frame of an answer without parsing every delta.
LAST_FRAMES = ('{"type": "done"', '{"type": "error"')
# A level with fewer concurrent streams runs several rounds, so that its p50 is not one draw.
MIN_STREAMS_PER_LEVEL = 10
SIGNUP_THREADS = 4  # the server hashes each password for ~0.3 s; two cores, some overlap

TARGET_STREAMS = 50
TARGET_TTFT_P50_MS = 100.0
TARGET_DELTA_P99_MS = 20.0


# --- capturing: tight loops that only timestamp and keep raw bytes --------------------


@dataclass
class Capture:
    """One stream as the client saw it: when the request left and every arrival, unparsed."""

    sent_at: float = 0.0
    arrivals: list[tuple[float, str | bytes]] = field(default_factory=list)
    failure: str = ""


async def yiweb_stream(socket: Socket, text: str, timeout: float) -> Capture:
    capture = Capture()
    # What the page sends for a first message: a new conversation, a fresh client_id.
    frame = {"type": "send", "conversation_id": None, "text": text, "model": MODEL, "client_id": uuid.uuid4().hex}
    receive, arrivals = socket.connection.recv, capture.arrivals
    try:
        async with asyncio.timeout(timeout):
            capture.sent_at = time.time()
            await socket.send(frame)
            while True:
                raw = await receive()
                arrivals.append((time.time(), raw))
                if raw.startswith(LAST_FRAMES):
                    break
    except (TimeoutError, websockets.ConnectionClosed) as error:  # reported with the figures, not fatal
        capture.failure = f"{type(error).__name__}: {error}"
    return capture


async def floor_stream(client: httpx.AsyncClient, text: str, timeout: float) -> Capture:
    capture = Capture()
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": True}
    arrivals = capture.arrivals
    try:
        async with asyncio.timeout(timeout):
            capture.sent_at = time.time()
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for chunk in response.aiter_raw():
                    arrivals.append((time.time(), chunk))
    except (TimeoutError, httpx.HTTPError) as error:
        capture.failure = f"{type(error).__name__}: {error}"
    return capture


# --- the processes and the rounds ---------------------------------------------------


@dataclass
class Processes:
    """The pids whose CPU time a round reports, to show which process was the bottleneck."""

    yiweb: int
    simulator: int | None

    def cpu_seconds(self) -> dict[str, float]:
        times = os.times()
        return {
            "client": times.user + times.system,
            "yiweb": process_cpu(self.yiweb),
            "simulator": process_cpu(self.simulator),
        }


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def simulator_pid() -> int | None:
    """running_simulator yields only a URL: find the child process serving chat.simulator."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"chat.simulator" in (stat.parent / "cmdline").read_bytes():
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@dataclass
class Round:
    captures: list[Capture]
    wall: float  # first request sent to last byte received
    cpu: dict[str, float]  # CPU seconds each process spent during the round


async def round_run(streams: list, processes: Processes) -> Round:
    """Run the streams concurrently."""
    gc.collect()
    gc.disable()  # a collection pass mid-round would stall every receive loop at once
    before = processes.cpu_seconds()
    try:
        captures = await asyncio.gather(*streams)
    finally:
        gc.enable()
    after = processes.cpu_seconds()
    ends = [c.arrivals[-1][0] for c in captures if c.arrivals]
    wall = max(ends) - min(c.sent_at for c in captures) if ends else math.nan
    return Round(captures, wall, {name: after[name] - before[name] for name in after})


async def floor_measure(
    simulator_url: str, streams: int, rounds: int, text: str, timeout: float, processes: Processes
) -> list[Round]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=streams)
    async with httpx.AsyncClient(
        base_url=simulator_url, headers={"Authorization": f"Bearer {API_KEY}"}, limits=limits, timeout=timeout
    ) as client:
        await floor_stream(client, WARM_UP, timeout)
        return [
            await round_run([floor_stream(client, text, timeout) for _ in range(streams)], processes)
            for _ in range(rounds)
        ]


async def yiweb_measure(
    base: str, sessions: list[str], rounds: int, text: str, timeout: float, processes: Processes
) -> list[Round]:
    # Tabs already open, as a person's would be; each send starts a new conversation.
    sockets = await asyncio.gather(*(Socket.open(base, session) for session in sessions))
    try:
        await yiweb_stream(sockets[0], WARM_UP, timeout)
        return [await round_run([yiweb_stream(s, text, timeout) for s in sockets], processes) for _ in range(rounds)]
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


# --- reading: parse the captures after the clock has stopped --------------------------


@dataclass
class Reading:
    ttft: float | None = None
    latencies: list[float] = field(default_factory=list)
    text: str = ""  # the answer as applied by seq, as a browser would
    final: str | None = None  # the server's own whole answer: `done` content, or the last `content`
    tokens_received: list[int] = field(default_factory=list)  # every token index in every frame
    frames: int = 0
    seq_gaps: int = 0
    seq_repeats: int = 0
    failure: str = ""


def tokens_stamp(reading: Reading, text: str, at: float) -> None:
    for match in TOKEN.finditer(text):
        reading.tokens_received.append(int(match.group(1)))
        reading.latencies.append(at - float(match.group(2)))


def yiweb_read(capture: Capture) -> Reading:
    reading, applied, message_id = Reading(failure=capture.failure), 0, None
    for at, raw in capture.arrivals:
        frame = json.loads(raw)
        kind = frame["type"]
        if kind == "delta" and message_id in (None, frame["message_id"]):
            message_id = frame["message_id"]
            reading.frames += 1
            if reading.ttft is None:
                reading.ttft = at - capture.sent_at
            tokens_stamp(reading, frame["text"], at)
            if frame["seq"] <= applied:
                reading.seq_repeats += 1
                continue
            reading.seq_gaps += frame["seq"] - applied - 1
            applied = frame["seq"]
            reading.text += frame["text"]
        elif kind == "done":
            reading.final = frame["message"]["content"]
            if frame["message"]["status"] != "complete":
                reading.failure = f"done with status {frame['message']['status']}"
        elif kind == "error":
            reading.failure = f"error frame: {frame['code']}"
    return reading


def floor_read(capture: Capture) -> Reading:
    reading, buffer = Reading(failure=capture.failure), b""
    for at, chunk in capture.arrivals:
        *events, buffer = (buffer + chunk).split(b"\n\n")
        for event in events:  # an event counts as arrived when its last byte has
            payload = event.removeprefix(b"data:").strip()
            if payload == b"[DONE]":
                continue
            data = json.loads(payload)
            piece = data["choices"][0]["delta"].get("content")
            reading.final = data.get("content", reading.final)
            if piece:
                reading.frames += 1
                if reading.ttft is None:
                    reading.ttft = at - capture.sent_at
                tokens_stamp(reading, piece, at)
                reading.text += piece
    return reading


def text_exact(text: str | None, deltas: int) -> bool:
    """The whole answer: t0 … t{deltas-1}, each once, in order, each with its stamp."""
    if text is None:
        return False
    matches = list(TOKEN.finditer(text))
    return "".join(m.group(0) for m in matches) == text and [int(m.group(1)) for m in matches] == list(range(deltas))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    values = sorted(values)
    rank = (len(values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def figures(path: str, streams: int, rounds: list[Round], deltas: int) -> dict:
    read = yiweb_read if path == "yiweb" else floor_read
    readings = [read(capture) for r in rounds for capture in r.captures]
    ttfts = [r.ttft for r in readings if r.ttft is not None]
    latencies = [x for r in readings for x in r.latencies]
    lost = sum(deltas - len({int(i) for i, _ in TOKEN.findall(r.text)} & set(range(deltas))) for r in readings)
    dup = sum(len(r.tokens_received) - len(set(r.tokens_received)) for r in readings)
    walls = sorted(r.wall for r in rounds)
    # How long the simulator took to emit each answer: (deltas - 1) × interval if it kept pace.
    emissions = [float(t[-1][1]) - float(t[0][1]) for t in (TOKEN.findall(r.text) for r in readings) if t]
    busy = sum(r.wall for r in rounds)
    return {
        "streams": streams,
        "path": path,
        "samples": {"streams": len(readings), "rounds": len(rounds), "tokens": len(latencies)},
        "ttft_ms": {"p50": percentile(ttfts, 50) * 1000, "p99": percentile(ttfts, 99) * 1000},
        "delta_ms": {
            "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "max": max(latencies, default=math.nan) * 1000,
        },
        "lost": lost,
        "dup": dup,
        "seq_gaps": sum(r.seq_gaps for r in readings),
        "seq_repeats": sum(r.seq_repeats for r in readings),
        "text_mismatches": sum(not text_exact(r.text, deltas) for r in readings),
        "final_mismatches": sum(not (r.final == r.text and text_exact(r.final, deltas)) for r in readings),
        "failures": [r.failure for r in readings if r.failure],
        "tokens_per_frame": len(latencies) / max(1, sum(r.frames for r in readings)),
        "wall_s": walls[len(walls) // 2],
        "emission_s": percentile(emissions, 50),
        # CPU seconds per second of wall time: 1.0 is one core kept busy.
        "cores_busy": {name: sum(r.cpu[name] for r in rounds) / busy for name in rounds[0].cpu},
    }


# --- the run -------------------------------------------------------------------------


def sessions_create(base: str, count: int) -> list[str]:
    """`count` people signed up through the real form, each with their session cookie."""
    with ThreadPoolExecutor(SIGNUP_THREADS) as pool:
        return list(pool.map(lambda i: signup(base, f"relay{i:03d}"), range(count)))


async def levels_measure(base: str, simulator_url: str, sessions: list[str], processes: Processes, args) -> list[dict]:
    text = f"relay benchmark [sim deltas={args.deltas} interval={args.interval_ms:g} stamp=1]"
    timeout = 30 + 20 * args.deltas * args.interval_ms / 1000
    results = []
    for streams in args.streams:
        rounds = math.ceil(MIN_STREAMS_PER_LEVEL / streams)
        floor = await floor_measure(simulator_url, streams, rounds, text, timeout, processes)
        results.append(figures("floor", streams, floor, args.deltas))
        yiweb = await yiweb_measure(base, sessions[:streams], rounds, text, timeout, processes)
        results.append(figures("yiweb", streams, yiweb, args.deltas))
    return results


def measure(args) -> list[dict]:
    with running_simulator() as simulator_url, sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY)
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, app):
            processes = Processes(yiweb=app.pid, simulator=simulator_pid())
            sessions = sessions_create(base, max(args.streams))
            return asyncio.run(levels_measure(base, simulator_url, sessions, processes, args))


# --- the report ----------------------------------------------------------------------


def ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def ratio(yiweb: float, floor: float) -> str:
    return f"{yiweb / floor:.1f}×" if floor > 0 and not math.isnan(yiweb) else "-"


def clean(result: dict) -> bool:
    return not (
        result["lost"]
        or result["dup"]
        or result["seq_gaps"]
        or result["seq_repeats"]
        or result["text_mismatches"]
        or result["final_mismatches"]
        or result["failures"]
    )


def targets_check(results: list[dict]) -> list[dict]:
    level = TARGET_STREAMS if TARGET_STREAMS in {r["streams"] for r in results} else max(r["streams"] for r in results)
    yiweb = next(r for r in results if r["path"] == "yiweb" and r["streams"] == level)
    return [
        {
            "target": f"ttft p50 ≤ {TARGET_TTFT_P50_MS:g} ms",
            "streams": level,
            "value": ms(yiweb["ttft_ms"]["p50"]),
            "pass": yiweb["ttft_ms"]["p50"] <= TARGET_TTFT_P50_MS,
        },
        {
            "target": f"added delta p99 ≤ {TARGET_DELTA_P99_MS:g} ms",
            "streams": level,
            "value": ms(yiweb["delta_ms"]["p99"]),
            "pass": yiweb["delta_ms"]["p99"] <= TARGET_DELTA_P99_MS,
        },
        {
            "target": "nothing lost",
            "streams": level,
            "value": f"{yiweb['lost']} lost, {yiweb['dup']} dup",
            "pass": clean(yiweb),
        },
    ]


def cores(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def report(results: list[dict], targets: list[dict], machine: dict, args) -> str:
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    lines = [
        f"relay: {args.deltas} deltas × {args.interval_ms:g} ms per stream, one Daphne process, SQLite, in-memory layer",
        (
            f"machine: {machine['nproc']} cores, Python {machine['python']}, "
            f"load average {machine['load_before']:.2f} before the run{busy}"
        ),
        (
            f"{'streams':<9}{'path':<8}{'ttft p50':>10}{'ttft p99':>11}{'delta p50':>12}{'delta p99':>12}"
            f"{'lost':>6}{'dup':>5}{'wall':>9}   cores busy: client yiweb  sim"
        ),
    ]
    notes = []
    for floor, yiweb in zip(results[::2], results[1::2]):
        for r in (floor, yiweb):
            busy = r["cores_busy"]
            lines.append(
                f"{r['streams']:<9}{r['path']:<8}{ms(r['ttft_ms']['p50']):>10}{ms(r['ttft_ms']['p99']):>11}"
                f"{ms(r['delta_ms']['p50']):>12}{ms(r['delta_ms']['p99']):>12}{r['lost']:>6}{r['dup']:>5}"
                f"{r['wall_s']:>8.2f}s{'':>15}{cores(busy['client']):>6}{cores(busy['yiweb']):>6}"
                f"{cores(busy['simulator']):>5}"
            )
            if not clean(r):
                notes.append(
                    f"  {r['streams']} {r['path']}: {r['seq_gaps']} seq gaps, {r['seq_repeats']} seq repeats, "
                    f"{r['text_mismatches']} texts and {r['final_mismatches']} final answers not exact, "
                    f"{len(r['failures'])} failed streams {r['failures'][:3]}"
                )
        lines.append(
            f"{'':<9}{'ratio':<8}{ratio(yiweb['ttft_ms']['p50'], floor['ttft_ms']['p50']):>10}"
            f"{ratio(yiweb['ttft_ms']['p99'], floor['ttft_ms']['p99']):>11}"
            f"{ratio(yiweb['delta_ms']['p50'], floor['delta_ms']['p50']):>12}"
            f"{ratio(yiweb['delta_ms']['p99'], floor['delta_ms']['p99']):>12}{'':>11}"
            f"{ratio(yiweb['wall_s'], floor['wall_s']):>9}"
        )
    lines += notes
    lines.append(
        f"targets at {targets[0]['streams']} streams: ttft p50 ≤ {TARGET_TTFT_P50_MS:g} ms, "
        f"added delta p99 ≤ {TARGET_DELTA_P99_MS:g} ms, nothing lost"
    )
    lines += [f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}" for t in targets]
    return "\n".join(lines)


def results_write(results: list[dict], targets: list[dict], machine: dict, args) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "relay",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "streams": args.streams,
            "deltas": args.deltas,
            "interval_ms": args.interval_ms,
            "database": "sqlite",
            "channel_layer": "in-memory",
            "processes": 1,
        },
        "results": results,
        "targets": targets,
    }
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Relay latency of yiweb against reading the upstream directly.")
    parser.add_argument(
        "--streams",
        default="1,50",
        type=lambda v: sorted({int(n) for n in v.split(",")}),
        help="concurrent streams per level, comma-separated (default 1,50)",
    )
    parser.add_argument("--deltas", type=int, default=500, help="deltas per stream (default 500)")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="ms between deltas (default 2)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
    }
    results = measure(args)
    machine["load_after"] = os.getloadavg()[0]
    targets = targets_check(results)
    print(report(results, targets, machine, args))
    results_write(results, targets, machine, args)
    print(f"figures: {RESULTS.relative_to(REPO_ROOT)}; whole run {time.monotonic() - started:.0f} s")
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
