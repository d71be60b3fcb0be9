"""What the benchmarks share: clients that only timestamp what arrives, the reading of
stamped answers once the clock has stopped, and CPU accounting from /proc.

The simulator's `stamp=1` directive writes into every delta the time it left, so on one
machine (one clock) each token's added latency is the time the client received it minus
that stamp. Used by bench/relay.py and bench/load.py; figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from tests.live_server import Socket, manage, production_env, running_app, signup, sqlite_database
from tests.simulator_server import running_simulator

API_KEY = "sk-bench"
MODEL = "yi-large"
WARM_UP = "warm-up [sim deltas=5 interval=0 stamp=1]"
TOKEN = re.compile(r"t(\d+)@(\d+\.\d+) ")
# Frames are JSON with "type" first (the consumer's json.dumps keeps key order), so the
# receive loop can spot the last frame of an answer without parsing every delta.
LAST_FRAMES = ('{"type": "done"', '{"type": "error"')
SIGNUP_THREADS = 4  # the server hashes each password for ~0.3 s; two cores, some overlap


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


@contextlib.contextmanager
def deployed(people: int, prefix: str) -> Iterator[tuple[str, str, list[str], Processes]]:
    """yiweb as deployed (production settings, a SQLite file, one Daphne process) in front of
    the simulator, with `people` signed up: (its URL, the simulator's, their session
    cookies, the processes to watch)."""
    with running_simulator() as simulator_url, sqlite_database() as database_url, production_env(
        DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY
    ) as env:
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, app):
            processes = Processes(yiweb=[app.pid], simulator=simulator_pids())
            yield base, simulator_url, sessions_create([base], people, prefix), processes


def sessions_create(bases: list[str], count: int, prefix: str, threads: int = SIGNUP_THREADS) -> list[str]:
    """`count` people signed up through the real form (spread over `bases`), each with their session cookie."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: signup(bases[i % len(bases)], f"{prefix}{i:03d}"), range(count)))


# --- the processes and the rounds ---------------------------------------------------


@dataclass
class Processes:
    """The pids whose CPU time a round reports, to show which process was the bottleneck."""

    yiweb: list[int]
    simulator: list[int]
    services: tuple[str, ...] = ()  # process names (comm) summed as "services", e.g. redis-server

    def cpu_seconds(self) -> dict[str, float]:
        times = os.times()
        cpu = {
            "client": times.user + times.system,
            "yiweb": processes_cpu(self.yiweb),
            "simulator": processes_cpu(self.simulator),
        }
        if self.services:
            cpu["services"] = services_cpu(self.services)
        return cpu


def stat_fields(pid: int | str | None) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc; NaN elsewhere)."""
    try:
        fields = stat_fields(pid)
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_cpu(pids: list[int]) -> float:
    return sum(process_cpu(pid) for pid in pids) if pids else math.nan


def services_cpu(names: tuple[str, ...]) -> float:
    """CPU seconds of every process named so, plus their reaped children's: PostgreSQL
    starts a backend per connection, and a backend that exited is counted by its parent."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] in names:
                fields = text.rsplit(")", 1)[1].split()
                total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def simulator_pids() -> list[int]:
    """running_simulator yields only a URL: find the child processes serving chat.simulator."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if (
                int(stat_fields(stat.parent.name)[1]) == os.getpid()
                and b"chat.simulator" in (stat.parent / "cmdline").read_bytes()
            ):
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pids)


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


def stream_figures(readings: list[Reading], rounds: list[Round], deltas: int) -> dict:
    """Latency, loss and CPU figures of one level: every stream of every round."""
    ttfts = [r.ttft for r in readings if r.ttft is not None]
    latencies = [x for r in readings for x in r.latencies]
    lost = sum(deltas - len({int(i) for i, _ in TOKEN.findall(r.text)} & set(range(deltas))) for r in readings)
    dup = sum(len(r.tokens_received) - len(set(r.tokens_received)) for r in readings)
    walls = sorted(r.wall for r in rounds)
    # How long the simulator took to emit each answer: (deltas - 1) × interval if it kept pace.
    emissions = [float(t[-1][1]) - float(t[0][1]) for t in (TOKEN.findall(r.text) for r in readings) if t]
    busy = sum(r.wall for r in rounds)
    return {
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


# --- the report ----------------------------------------------------------------------


def machine_describe() -> dict:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
        "speed_probe_ms": speed_probe(),
    }


def speed_probe() -> list[float]:
    """Milliseconds for the same pure-Python loop, five times a second apart. On the shared
    virtual machine these benchmarks were developed on, one such loop took from 133 to
    216 ms within ten seconds: a slow run can be the machine, and this says so."""
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        timings.append(round((time.perf_counter() - started) * 1000, 1))
        time.sleep(1)
    return timings


def ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def cores(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def parser_create(description: str, *, streams: str, interval_ms: float, deltas: int = 500) -> argparse.ArgumentParser:
    """The options every benchmark takes: how many streams, how long, how fast."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--streams",
        default=streams,
        type=lambda v: sorted({int(n) for n in v.split(",")}),
        help=f"concurrent streams per level, comma-separated (default {streams})",
    )
    parser.add_argument("--deltas", type=int, default=deltas, help=f"deltas per stream (default {deltas})")
    parser.add_argument(
        "--interval-ms", type=float, default=interval_ms, help=f"ms between deltas (default {interval_ms:g})"
    )
    return parser
