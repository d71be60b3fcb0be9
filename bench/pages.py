"""What plain HTTP requests (pages, their static files, the JSON the page asks for) do to
answers streaming meanwhile, and to the event loop that relays them.

    .venv/bin/python -m bench.pages [--streams 20] [--deltas 250] [--interval-ms 20]
                                    [--rounds 3] [--visitors 10] [--handlers lent,django]

One Daphne process of yiweb (production settings: collected static files served by
WhiteNoise, SQLite in a temporary folder, the in-memory layer), run under
bench/loop_probe.py, relays `--streams` answers of the simulator at once with `stamp=1`
deltas (bench/common.py), in rounds taken in turn: alone, then while `--visitors` other
people load pages from half a second before the answers start until they end, each
again as soon as the last load finished: GET / (the chat page), every /static/ file it
names (six at a time, as a browser's connections to one host), GET /api/conversations
and GET /api/models. No browser cache: each load fetches every file, as a first visit.
The visitors run in a process of their own, so the client timing the deltas does no
HTTP work.

`--handlers` serves each round's answers from one of two processes, taken in turn:
`lent` is yiweb.asgi as deployed (HTTP through yiweb.request_threads), `django` is
Django's own ASGI handler, which starts a thread for every request and joins it at its
end (the comparison of docs/benchmarks.md). Figures per handler: the answers' added
delta latency, the loop's stalls over 5 ms within the rounds (bench/loop_probe.py) and
where the loop was in them, and the visitors' requests. Results: bench/results/pages.json.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import os
import queue
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx
import uvloop

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
    percentile,
    round_run,
    sessions_create,
    simulator_pids,
    stream_figures,
    yiweb_read,
    yiweb_stream,
)
from tests.live_server import Socket, manage, production_env, running_app, sqlite_database
from tests.simulator_server import running_simulator

RESULTS = REPO_ROOT / "bench" / "results" / "pages.json"
HANDLERS = {"lent": "yiweb.asgi:application", "django": "bench.loop_probe:django_threads_application"}
VISITORS_LEAD_S = 0.5
REQUEST_TIMEOUT_S = 30.0
CONNECTIONS_PER_VISITOR = 6  # a browser's connections to one host over HTTP/1.1
STATIC = re.compile(r'(?:src|href)="(/static/[^"]+)"')


# --- the visitors, from a process of their own -------------------------------------------


async def timed(client: httpx.AsyncClient, path: str, done: list[dict]) -> None:
    started = time.time()
    try:
        response = await client.get(path)
        status = response.status_code
    except httpx.HTTPError as failure:
        status, response = 0, f"{type(failure).__name__}: {failure}"
    done.append({"path": path, "started": started, "seconds": time.time() - started, "status": status})
    return response


async def page_load(client: httpx.AsyncClient, done: list[dict]) -> None:
    page = await timed(client, "/", done)
    files = sorted(set(STATIC.findall(page.text))) if isinstance(page, httpx.Response) else []
    await asyncio.gather(*(timed(client, f, done) for f in files), timed(client, "/api/conversations", done),
                         timed(client, "/api/models", done))


async def visitors_serve(base: str, sessions: list[str], commands, stop, results) -> None:
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=CONNECTIONS_PER_VISITOR)
    clients = [httpx.AsyncClient(base_url=base, cookies={"sessionid": s}, limits=limits, timeout=REQUEST_TIMEOUT_S)
               for s in sessions]

    async def again_and_again(client: httpx.AsyncClient) -> list[dict]:
        done: list[dict] = []
        await page_load(client, done)
        while not stop.is_set():
            await page_load(client, done)
        return done

    try:
        while (command := await loop.run_in_executor(None, commands.get)) != "quit":
            if command == "once":
                done: list[dict] = []
                await asyncio.gather(*(page_load(c, done) for c in clients))
                results.put(done)
            else:
                each = await asyncio.gather(*(again_and_again(c) for c in clients))
                results.put([request for requests in each for request in requests])
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def visitors_main(base: str, sessions: list[str], commands, stop, results) -> None:
    uvloop.run(visitors_serve(base, sessions, commands, stop, results))


class Visitors:
    """The visiting people's process, for one server: `go` starts each of them loading pages
    again and again until `finish`, which returns every request."""

    def __init__(self, base: str, sessions: list[str]):
        context = multiprocessing.get_context("spawn")
        self.commands, self.results, self.stop = context.Queue(), context.Queue(), context.Event()
        self.process = context.Process(target=visitors_main, args=(base, sessions, self.commands, self.stop,
                                                                   self.results), daemon=True)
        self.process.start()

    def once(self) -> list[dict]:
        self.commands.put("once")
        return self.requests_get()

    def go(self) -> None:
        self.stop.clear()
        self.commands.put("go")

    async def finish(self) -> list[dict]:
        self.stop.set()
        return await asyncio.get_running_loop().run_in_executor(None, self.requests_get)

    def requests_get(self) -> list[dict]:
        deadline = time.monotonic() + 4 * REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"the visitors' process ended (exit code {self.process.exitcode})") from None
        raise RuntimeError("no requests came back in time")

    def close(self) -> None:
        self.stop.set()
        self.commands.put("quit")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# --- one server per handler, rounds in turn -----------------------------------------------


class Server:
    def __init__(self, handler: str, base: str, pid: int, probe_file: Path, readers: list[str], visitors: Visitors):
        self.handler, self.base, self.pid, self.probe_file = handler, base, pid, probe_file
        self.readers, self.visitors = readers, visitors
        self.alone: list[Round] = []
        self.beside: list[Round] = []
        self.requests: list[list[dict]] = []


async def servers_measure(servers: list[Server], args) -> None:
    text = f"pages benchmark [sim deltas={args.deltas} interval={args.interval_ms:g} stamp=1]"
    timeout = 30 + 4 * args.deltas * args.interval_ms / 1000
    sockets = {s.handler: await asyncio.gather(*(Socket.open(s.base, r) for r in s.readers)) for s in servers}
    try:
        for s in servers:
            await yiweb_stream(sockets[s.handler][0], WARM_UP, timeout)
        for _ in range(args.rounds):
            for s in servers:
                processes = Processes(yiweb=[s.pid], simulator=simulator_pids())
                s.alone.append(await round_run([yiweb_stream(k, text, timeout) for k in sockets[s.handler]],
                                               processes))
                s.visitors.go()
                await asyncio.sleep(VISITORS_LEAD_S)
                s.beside.append(await round_run([yiweb_stream(k, text, timeout) for k in sockets[s.handler]],
                                                processes))
                s.requests.append(await s.visitors.finish())
    finally:
        await asyncio.gather(*(k.close() for ks in sockets.values() for k in ks), return_exceptions=True)


def measure(args, folder: Path) -> list[dict]:
    with running_simulator() as simulator_url, sqlite_database() as database_url, production_env(
        DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY
    ) as env:
        manage("migrate", "--noinput", env=env)
        with contextlib.ExitStack() as stack:
            servers = []
            for handler in args.handlers:
                probe_file = folder / f"stalls-{handler}.jsonl"
                base, app = stack.enter_context(running_app(
                    {**env, "LOOP_PROBE_FILE": str(probe_file)}, server="bench.loop_probe",
                    application=HANDLERS[handler], log_path=folder / f"yiweb-{handler}.log"))
                readers = sessions_create([base], max(args.streams), f"reader-{handler}-")
                people = sessions_create([base], args.visitors, f"visitor-{handler}-")
                visitors = Visitors(base, people)
                stack.callback(visitors.close)
                warm = visitors.once()  # the server's first pages: imports, templates, static files' index
                if any(r["status"] != 200 for r in warm):
                    raise RuntimeError(f"a warm-up request failed: {[r for r in warm if r['status'] != 200][:3]}")
                servers.append(Server(handler, base, app.pid, probe_file, readers, visitors))
            uvloop.run(servers_measure(servers, args))
            return [server_figures(s, args.deltas) for s in servers]


# --- reading -------------------------------------------------------------------------------


def stalls_read(probe_file: Path) -> list[dict]:
    if not probe_file.exists():
        return []
    return [json.loads(line) for line in probe_file.read_text().splitlines() if line]


def stall_cause(where: str) -> str:
    """Where the loop thread was, in a few words: the thread starts this benchmark is about, or not."""
    if "threading.py:start" in where:
        if "thread.py:_adjust_thread_count" in where:
            return "Thread.start: a request's worker thread"
        if "sync.py:__aexit__" in where:
            return "Thread.start: the thread joining a request's worker"
        return "Thread.start: other"
    if "thread.py:shutdown" in where or "threading.py:join" in where:
        return "letting go of or joining a thread"
    if where.startswith("asyncioreactor.py:run"):
        # No Python frame above the loop's own: in uvloop's C code, or waiting there for the
        # GIL that another thread (a request's sync code) holds.
        return "in the loop's C code or waiting for the GIL"
    return "elsewhere" if where else "not sampled"


def within(rounds: list[Round], stalls: list[dict]) -> list[dict]:
    windows = [(min(c.sent_at for c in r.captures), max(c.arrivals[-1][0] for c in r.captures if c.arrivals))
               for r in rounds]
    # A stall is noted when it ends: one that ends within a round held up that round.
    return [s for s in stalls if any(start <= s["at"] <= end for start, end in windows)]


def stall_figures(stalls: list[dict], rounds: list[Round]) -> dict:
    wall = sum(r.wall for r in rounds)
    lengths = sorted(s["ms"] for s in stalls)
    causes: dict[str, list[float]] = collections.defaultdict(list)
    for s in stalls:
        causes[stall_cause(s["where"])].append(s["ms"])
    places = collections.Counter(s["where"] for s in stalls if stall_cause(s["where"]) == "elsewhere")
    return {
        "count": len(stalls),
        "per_s": len(stalls) / wall if wall else math.nan,
        "share_of_wall": sum(lengths) / 1000 / wall if wall else math.nan,
        "max_ms": lengths[-1] if lengths else 0.0,
        "longest_ms": lengths[-5:][::-1],
        "by_cause": {cause: {"count": len(v), "ms": round(sum(v), 1), "max_ms": max(v)}
                     for cause, v in sorted(causes.items(), key=lambda kv: -sum(kv[1]))},
        "elsewhere_top": places.most_common(3),
    }


def requests_figures(requests: list[list[dict]], rounds: list[Round]) -> dict:
    flat = [r for rs in requests for r in rs]
    ok = [r["seconds"] for r in flat if r["status"] == 200]
    wall = sum(r.wall for r in rounds)
    return {"count": len(flat), "failed": len(flat) - len(ok), "pages": sum(r["path"] == "/" for r in flat),
            "p50_ms": percentile(ok, 50) * 1000, "p99_ms": percentile(ok, 99) * 1000,
            "per_s_during_answers": len([r for r in flat if r["status"] == 200]) / wall if wall else math.nan,
            "failures": sorted({f"{r['status']} {r['path']}" for r in flat if r["status"] != 200})[:5]}


def server_figures(server: Server, deltas: int) -> dict:
    stalls = stalls_read(server.probe_file)

    def figures(rounds: list[Round]) -> dict:
        per_round = [[yiweb_read(c) for c in r.captures] for r in rounds]
        pooled = stream_figures([reading for readings in per_round for reading in readings], rounds, deltas)
        pooled["per_round_delta_p99_ms"] = [stream_figures(rs, [r], deltas)["delta_ms"]["p99"]
                                            for rs, r in zip(per_round, rounds)]
        pooled["stalls"] = stall_figures(within(rounds, stalls), rounds)
        return pooled

    return {"handler": server.handler, "alone": figures(server.alone), "with_pages": figures(server.beside),
            "requests": requests_figures(server.requests, server.beside)}


# --- the report ----------------------------------------------------------------------------


def report(results: list[dict], machine: dict, args) -> str:
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    lines = [
        f"pages: {args.streams[0]} answers × {args.deltas} deltas × {args.interval_ms:g} ms, {args.rounds} round(s) "
        f"each way and handler in turn, {args.visitors} people loading pages beside; commit {machine['commit']}",
        f"machine: {machine['nproc']} cores, load average {machine['load_before']:.2f} before, "
        f"{machine['load_after']:.2f} after{busy}; speed probe {min(machine['speed_probe_ms']):g} to "
        f"{max(machine['speed_probe_ms']):g} ms",
        f"{'handler':<8}{'':<12}{'delta p50':>10}{'delta p99':>10}{'max':>9}{'lost':>5}"
        f"{'stalls/s':>9}{'stalled':>8}{'longest stalls':>28}   yiweb cores  rounds' delta p99",
    ]
    for r in results:
        for label, key in (("alone", "alone"), ("with pages", "with_pages")):
            f, st = r[key], r[key]["stalls"]
            lines.append(
                f"{r['handler']:<8}{label:<12}{ms(f['delta_ms']['p50']):>10}{ms(f['delta_ms']['p99']):>10}"
                f"{ms(f['delta_ms']['max']):>9}{f['lost']:>5}{st['per_s']:>9.1f}{st['share_of_wall']:>8.1%}"
                f"{', '.join(f'{x:.0f}' for x in st['longest_ms']) + ' ms':>28}"
                f"   {cores(f['cores_busy']['yiweb']):>11}  {', '.join(ms(p) for p in f['per_round_delta_p99_ms'])}"
            )
            if not clean(f):
                lines.append(f"  {f['seq_gaps']} seq gaps, {f['seq_repeats']} repeats, failures {f['failures'][:3]}")
        a, b = r["alone"], r["with_pages"]
        lines.append(f"{'':<8}{'ratio':<12}{b['delta_ms']['p50'] / a['delta_ms']['p50']:>9.2f}×"
                     f"{b['delta_ms']['p99'] / a['delta_ms']['p99']:>9.2f}×")
        for cause, c in b["stalls"]["by_cause"].items():
            lines.append(f"{'':<8}with pages, stalls {cause}: {c['count']}, {c['ms']:.0f} ms in all, "
                         f"longest {c['max_ms']:.0f} ms")
        for where, count in b["stalls"]["elsewhere_top"]:
            lines.append(f"{'':<10}{count}× {where[:160]}")
        q = r["requests"]
        lines.append(f"{'':<8}visitors: {q['count']} requests ({q['pages']} page loads), "
                     f"{q['per_s_during_answers']:.0f}/s during the answers, p50 {ms(q['p50_ms'])}, "
                     f"p99 {ms(q['p99_ms'])}, {q['failed']} failed {q['failures']}")
    if len(results) == 2:
        lent, django = (next(r for r in results if r["handler"] == h) for h in ("lent", "django"))
        a, b = lent["with_pages"], django["with_pages"]
        lines.append(f"with pages, lent / django: delta p50 {a['delta_ms']['p50'] / b['delta_ms']['p50']:.2f}×, "
                     f"p99 {a['delta_ms']['p99'] / b['delta_ms']['p99']:.2f}×, stalled share "
                     f"{a['stalls']['share_of_wall'] / max(b['stalls']['share_of_wall'], 1e-9):.2f}×")
    return "\n".join(lines)


def commit_describe() -> str:
    import subprocess

    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_create("What page loads do to streaming answers and the event loop.", streams="20",
                           interval_ms=20.0, deltas=250)
    parser.add_argument("--rounds", type=int, default=3, help="rounds each way and handler (default 3)")
    parser.add_argument("--visitors", type=int, default=10, help="people loading pages at once (default 10)")
    parser.add_argument("--handlers", default="lent,django", type=lambda v: v.split(","),
                        help="HTTP handlers compared, in turn: lent (yiweb as deployed), django (default both)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = {**machine_describe(), "commit": commit_describe()}
    with tempfile.TemporaryDirectory(prefix="yiweb-bench-pages-") as folder:
        try:
            results = measure(args, Path(folder))
        finally:
            # The servers' output and every stall, for a failure or a stall to be looked into.
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            for kept in Path(folder).glob("*-*.*"):
                if kept.suffix in (".log", ".jsonl"):
                    (RESULTS.parent / f"pages-{kept.name}").write_bytes(kept.read_bytes())
    machine["load_after"] = os.getloadavg()[0]
    print(report(results, machine, args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "pages", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
        "argv": argv, "results": results,
    }, indent=2, ensure_ascii=False) + "\n")
    print(f"figures: {RESULTS.relative_to(REPO_ROOT)}; whole run {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
