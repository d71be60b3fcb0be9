"""What a person sees: tokens reaching the DOM of real Chromium pages, 1 and 10 at once.

    python bench/browser.py [--pages 1,10] [--layouts windows,tabs] [--deltas 200] [--interval-ms 10]
                            [--rounds 3] [--wake-probe] [--trace FILE]

One Daphne process of yiweb as deployed (DEBUG off, collected static files, SQLite in a
temp folder, the in-memory layer) relays the simulator, as bench/relay.py runs them.
Debian's Chromium (/usr/bin/chromium, driven by Playwright) opens `pages` chat pages
in one of two layouts:

- windows: each page signed in as a person of their own, in a context (a window) of its
  own, so every page is the one tab of its window and Chromium paints them all;
- tabs: the pages are tabs of one person in one context, as one person with many tabs
  has them; Chromium gives a tab that is not its window's front tab no animation frame or
  one a second (docs/benchmarks.md has the trace), though Playwright reports every page
  "visible".

In each page the question `[sim deltas=N interval=MS stamp=2]` is typed and Enter
pressed in all pages at once.
The simulator writes into every token the wall-clock time it left (`t{i}:{unix time} `:
`stamp=2`, since Markdown links `stamp=1`'s `t{i}@{time}` as an e-mail address);
a MutationObserver put in every page before its scripts (`OBSERVER`) notes when each
token first stands in the answer's DOM text. Both processes read one clock, so:

- first token: Enter's keydown (seen by the page) to the first token in the DOM;
- each token: its emission by the simulator to its first appearance in the DOM;
- lost: tokens never seen in the DOM by the time the answer is shown complete.

One page is measured in the windows layout only (one tab is its window's front tab).
`--wake-probe` runs, beside each level, a process that only sleeps a millisecond at a time
and notes how late it wakes: how long this machine leaves a runnable process waiting
while the level runs (nothing of yiweb's or Chromium's is in it). A first token that
waits on such stalls is the machine's, and the report says how large they were.
`--trace FILE` records a Chromium trace (DevTools' Performance format, open it in
chrome://tracing or Perfetto) of the last round of the largest level, per layout
(FILE's name gets the layout).
Figures and findings: docs/benchmarks.md, "bench/browser.py". Results also go to
bench/results/browser.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import (
    Processes,
    deployed,
    machine_describe,
    ms,
    percentile,
    process_cpu,
    stat_fields,
)

CHROMIUM = "/usr/bin/chromium"
RESULTS = REPO_ROOT / "bench" / "results" / "browser.json"
# The flags the browser tests use: no sandbox (containers), no GPU (none here), nothing
# phoning home in the middle of a measurement.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MIN_PAGES_PER_LEVEL = 10  # one page runs this many rounds, so its p50 is not one draw
MIN_ROUNDS = 3

TARGET_PAGES = 10
TARGET_TTFT_P50_MS = 300.0
TARGET_DELTA_P50_MS = 100.0
TARGET_DELTA_P99_MS = 500.0
TARGET_ONE_PAGE_P99_MS = 17.0  # one animation frame at 60 Hz

# Put in every page before its own scripts. It keeps to itself: one observer of the whole
# document, one capturing keydown listener. A token counts once its whole stamp (six
# decimals) is in an answer's text; the first time it is seen is kept.
OBSERVER = r"""
(() => {
  const bench = (window.__bench = { enter: null, seen: {}, socketsOpened: 0 });
  const TOKEN = /t(\d+):(\d+\.\d{6})/g;
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.id === "message-input" && bench.enter === null) bench.enter = Date.now();
  }, true);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => bench.socketsOpened++);
    }
  };
  function scan() {
    const now = Date.now();
    for (const body of document.querySelectorAll(".message-assistant .message-body")) {
      for (const match of body.textContent.matchAll(TOKEN)) {
        if (!(match[1] in bench.seen)) bench.seen[match[1]] = [now, Number(match[2]) * 1000];
      }
    }
  }
  new MutationObserver(scan).observe(document, { subtree: true, childList: true, characterData: true });
})();
"""
READ = "() => ({ enter: window.__bench.enter, seen: window.__bench.seen, visibility: document.visibilityState })"
COMPLETE = "() => { const m = [...document.querySelectorAll('[data-role=assistant]')].pop(); return m && m.dataset.status !== 'streaming'; }"


# The wake-up probe (`--wake-probe`): sleeps 1 ms at a time and writes how long each sleep
# really took, in ms; SIGTERM ends it with everything written.
WAKE_PROBE = r"""
import signal, sys, time
gaps = []
def leave(*_):
    with open(sys.argv[1], "w") as out:
        out.write("\n".join(f"{g:.3f}" for g in gaps))
    sys.exit(0)
signal.signal(signal.SIGTERM, leave)
last = time.monotonic()
while True:
    time.sleep(0.001)
    now = time.monotonic()
    gaps.append((now - last) * 1000)
    last = now
"""


@contextlib.contextmanager
def wake_probe(on: bool):
    """While the block runs, how late a process that only sleeps 1 ms wakes: a dict
    (filled in when the block ends) with p50, p99, max and the count of waits over 20 ms."""
    found: dict = {}
    if not on:
        yield found
        return
    with tempfile.NamedTemporaryFile(suffix=".probe") as file:
        probe = subprocess.Popen([sys.executable, "-c", WAKE_PROBE, file.name])
        try:
            yield found
        finally:
            probe.send_signal(signal.SIGTERM)
            probe.wait(timeout=10)
            gaps = [float(x) for x in Path(file.name).read_text().split()]
            found.update({"p50_ms": percentile(gaps, 50), "p99_ms": percentile(gaps, 99),
                          "max_ms": max(gaps, default=math.nan), "over_20_ms": sum(g > 20 for g in gaps)})


@dataclass
class PageReading:
    enter: float | None
    seen: dict[int, tuple[float, float]]  # token -> (ms seen in the DOM, ms emitted), epoch
    status: str = ""
    visibility: str = ""
    failure: str = ""

    @property
    def ttft(self) -> float | None:
        if self.enter is None or not self.seen:
            return None
        return min(at for at, _ in self.seen.values()) - self.enter

    @property
    def ttft_upstream(self) -> float | None:
        """Of the first token's time, Enter to the simulator's emission of it: the page's
        send, the server's write and the upstream request."""
        if self.enter is None or 0 not in self.seen:
            return None
        return self.seen[0][1] - self.enter

    @property
    def latencies(self) -> list[float]:
        return [at - emitted for at, emitted in self.seen.values()]


@dataclass
class BrowserRound:
    readings: list[PageReading]
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)  # one page's JavaScript by self time (--profile)


def chromium_pids() -> list[int]:
    """Every process below this one whose command is Chromium's: the browser, its renderers, GPU and utility."""
    me, children = os.getpid(), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat_fields(stat.parent.name)[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    below, todo = [], [me]
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    found = []
    for pid in below:
        try:
            if b"chromium" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                found.append(pid)
        except OSError:
            continue
    return found


def cpu_now(processes: Processes) -> dict[str, float]:
    cpu = processes.cpu_seconds()
    # Renderers come and go with the pages: only those alive at both ends of a round count,
    # which is every one that served it.
    cpu["chromium"] = {pid: process_cpu(pid) for pid in chromium_pids()}
    return cpu


def cpu_spent(before: dict, after: dict) -> dict[str, float]:
    spent = {name: after[name] - before[name] for name in before if name != "chromium"}
    spent["chromium"] = sum(after["chromium"][pid] - before["chromium"].get(pid, 0.0)
                            for pid in after["chromium"] if not math.isnan(after["chromium"][pid]))
    return spent


async def page_ready(page, base: str) -> None:
    """A fresh conversation page with its socket open and its models listed, as a person finds it."""
    await page.goto(f"{base}/")
    await page.wait_for_function(
        "() => window.__bench.socketsOpened > 0 && document.querySelector('#model-select').options.length > 0"
    )


async def page_read(page, timeout: float) -> PageReading:
    failure = ""
    try:
        await page.wait_for_function(COMPLETE, timeout=timeout * 1000, polling=100)
    except Exception as error:  # reported with the figures
        failure = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    data = await page.evaluate(READ)
    status = await page.evaluate(
        "() => ([...document.querySelectorAll('[data-role=assistant]')].pop() || {dataset: {}}).dataset.status || ''"
    )
    seen = {int(i): (float(at), float(emitted)) for i, (at, emitted) in data["seen"].items()}
    return PageReading(data["enter"], seen, status, data["visibility"], failure)


async def round_run(browser, pages: list, base: str, text: str, timeout: float, processes: Processes,
                    trace: str | None, profile: bool = False) -> BrowserRound:
    await asyncio.gather(*(page_ready(page, base) for page in pages))
    await asyncio.gather(*(page.fill("#message-input", text) for page in pages))
    await asyncio.sleep(0.5)  # the pages' first paint and socket settle before the clock starts
    if trace:
        await browser.start_tracing(path=trace, screenshots=False, categories=[
            "devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink.user_timing",
            "toplevel", "disabled-by-default-devtools.timeline.frame", "latencyInfo", "loading",
        ])
    profiler = await profile_start(pages[0]) if profile else None
    before, started = cpu_now(processes), time.monotonic()
    await asyncio.gather(*(page.press("#message-input", "Enter") for page in pages))
    readings = await asyncio.gather(*(page_read(page, timeout) for page in pages))
    wall = time.monotonic() - started
    cpu = cpu_spent(before, cpu_now(processes))
    if trace:
        await browser.stop_tracing()
    found = await profile_stop(profiler) if profiler else []
    return BrowserRound(list(readings), wall, {name: seconds / wall for name, seconds in cpu.items()}, found)


async def profile_start(page):
    """V8's sampling profiler on one page (Chromium's own, over CDP), from Enter on."""
    session = await page.context.new_cdp_session(page)
    await session.send("Profiler.enable")
    await session.send("Profiler.setSamplingInterval", {"interval": 200})  # µs
    await session.send("Profiler.start")
    return session


async def profile_stop(session) -> list[str]:
    """The page's JavaScript by self time, the heaviest first: what its main thread ran
    while the answer streamed (the browser's own style, layout and paint show as
    "(program)")."""
    profile = (await session.send("Profiler.stop"))["profile"]
    await session.detach()
    nodes = {node["id"]: node for node in profile["nodes"]}
    spent: dict[str, float] = {}
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"][1:] + [0]):
        frame = nodes[node_id]["callFrame"]
        where = f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber'] + 1}"
        spent[where] = spent.get(where, 0.0) + delta / 1000
    total = sum(spent.values())
    heaviest = sorted(spent.items(), key=lambda item: -item[1])[:12]
    return [f"{ms(total)} sampled"] + [f"{ms(t):>9}  {where}" for where, t in heaviest]


def level_figures(pages: int, rounds: list[BrowserRound], deltas: int) -> dict:
    readings = [r for one in rounds for r in one.readings]
    ttfts = [r.ttft for r in readings if r.ttft is not None]
    latencies = [x for r in readings for x in r.latencies]
    per_round = [[x for r in one.readings for x in r.latencies] for one in rounds]
    return {
        "pages": pages,
        "samples": {"pages": len(readings), "rounds": len(rounds), "tokens": len(latencies)},
        "ttft_ms": {"p50": percentile(ttfts, 50), "p99": percentile(ttfts, 99), "max": max(ttfts, default=math.nan)},
        # The first token's time in two: Enter to the upstream's emission, then emission to
        # the DOM (that token's own latency).
        "ttft_upstream_ms": {"p50": percentile([r.ttft_upstream for r in readings if r.ttft_upstream is not None], 50)},
        "ttft_page_ms": {"p50": percentile([r.seen[0][0] - r.seen[0][1] for r in readings if 0 in r.seen], 50)},
        "delta_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                     "max": max(latencies, default=math.nan)},
        "per_round": {
            "ttft_p50_ms": [percentile([r.ttft for r in one.readings if r.ttft is not None], 50) for one in rounds],
            "delta_p50_ms": [percentile(xs, 50) for xs in per_round],
            "delta_p99_ms": [percentile(xs, 99) for xs in per_round],
        },
        "lost": sum(deltas - len(set(r.seen) & set(range(deltas))) for r in readings),
        "not_complete": sum(r.status != "complete" for r in readings),
        "hidden_pages": sum(r.visibility != "visible" for r in readings),
        "failures": [r.failure for r in readings if r.failure],
        "wall_s": percentile([one.wall for one in rounds], 50),
        "cores_busy": {name: sum(one.cpu[name] * one.wall for one in rounds) / sum(one.wall for one in rounds)
                       for name in rounds[0].cpu},
    }


async def layout_measure(browser, base: str, sessions: list[str], count: int, layout: str, processes: Processes,
                         args) -> dict:
    """Rounds of `count` pages at once in `layout`, after a short answer that warms the
    server's path and the browser's caches."""
    text = f"browser benchmark [sim deltas={args.deltas} interval={args.interval_ms:g} stamp=2]"
    warm_up = f"browser warm-up [sim deltas=5 interval={args.interval_ms:g} stamp=2]"
    timeout = 30 + 5 * args.deltas * args.interval_ms / 1000
    contexts = []

    async def context_new(session: str):
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        await context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        await context.add_init_script(OBSERVER)
        contexts.append(context)
        return context

    try:
        if layout == "tabs":
            shared = await context_new(sessions[0])
            pages = [await shared.new_page() for _ in range(count)]
        else:
            pages = [await (await context_new(sessions[i])).new_page() for i in range(count)]
        await round_run(browser, pages[:1], base, warm_up, timeout, processes, None)
        rounds, total = [], max(args.rounds, math.ceil(MIN_PAGES_PER_LEVEL / count))
        with wake_probe(args.wake_probe) as stalls:
            for index in range(total):
                trace, last = None, count == max(args.pages) and index == total - 1
                if args.trace and last:
                    trace = str(Path(args.trace).with_stem(f"{Path(args.trace).stem}-{layout}"))
                rounds.append(await round_run(browser, pages, base, text, timeout, processes, trace,
                                              args.profile and last))
                if rounds[-1].profile:
                    print(f"profile of one page of {count} ({layout}), last round:", *rounds[-1].profile, sep="\n  ")
                await asyncio.sleep(1)
        return {"layout": layout, **level_figures(count, rounds, args.deltas), "wake_probe": stalls}
    finally:
        for context in contexts:
            await context.close()


async def levels_measure(base: str, sessions: list[str], processes: Processes, args) -> list[dict]:
    from playwright.async_api import async_playwright

    results = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + args.chromium_arg)
        try:
            for count in args.pages:
                for layout in args.layouts if count > 1 else ["windows"]:
                    results.append(await layout_measure(browser, base, sessions, count, layout, processes, args))
        finally:
            await browser.close()
    return results


def measure(args) -> list[dict]:
    with deployed(max(args.pages), "browser") as (base, _, sessions, processes):
        return asyncio.run(levels_measure(base, sessions, processes, args))


# --- the report ----------------------------------------------------------------------


def trace_summary(path: str) -> list[str]:
    """Per renderer of a trace: websocket frames received, the main thread's frames (when
    requestAnimationFrame callbacks can run) and the longest wait between two of them, and
    the time spent in the page's render (render_scheduler.js renderFrame). A renderer given one frame
    a second while frames keep arriving shows here as a few frames and ~1,000 ms gaps."""
    events = json.loads(Path(path).read_text())["traceEvents"]
    websocket, frames, render = {}, {}, {}
    for event in events:
        pid, name = event["pid"], event.get("name")
        if name == "WebSocketReceive":
            websocket.setdefault(pid, []).append(event["ts"])
        elif name == "BeginMainThreadFrame":
            frames.setdefault(pid, []).append(event["ts"])
        elif name == "FunctionCall" and event.get("args", {}).get("data", {}).get("functionName") == "renderFrame":
            render[pid] = render.get(pid, 0) + event.get("dur", 0)
    lines = [f"trace {path}: per renderer, frames received / main-thread frames / longest gap between frames / render"]
    for pid in sorted(websocket, key=lambda p: websocket[p][0]):
        ticks = sorted(t for t in frames.get(pid, []) if websocket[pid][0] <= t <= websocket[pid][-1])
        gap = max((b - a for a, b in zip(ticks, ticks[1:])), default=math.nan) / 1000
        lines.append(f"  renderer {pid}: {len(websocket[pid])} / {len(ticks)} / {ms(gap)} / {ms(render.get(pid, 0) / 1000)}")
    return lines




def target(name: str, result: dict, value: float, limit: float) -> dict:
    return {"target": f"{name} ≤ {limit:g} ms", "pages": result["pages"], "layout": result["layout"],
            "value": ms(value), "ratio": value / limit if not math.isnan(value) else math.nan, "pass": value <= limit}


def targets_check(results: list[dict]) -> list[dict]:
    checks = []
    for r in results:
        if r["pages"] == TARGET_PAGES:
            checks += [
                target("first token p50", r, r["ttft_ms"]["p50"], TARGET_TTFT_P50_MS),
                target("each token p50", r, r["delta_ms"]["p50"], TARGET_DELTA_P50_MS),
                target("each token p99", r, r["delta_ms"]["p99"], TARGET_DELTA_P99_MS),
            ]
        if r["pages"] == 1:
            checks.append(target("each token p99", r, r["delta_ms"]["p99"], TARGET_ONE_PAGE_P99_MS))
        problems = r["lost"] + r["not_complete"] + len(r["failures"])
        checks.append({"target": "nothing lost", "pages": r["pages"], "layout": r["layout"],
                       "value": f"{r['lost']} lost, {r['not_complete']} not complete", "ratio": math.nan,
                       "pass": problems == 0})
    return checks


def report(results: list[dict], targets: list[dict], machine: dict, args) -> str:
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    flags = f" (also {' '.join(args.chromium_arg)})" if args.chromium_arg else ""
    lines = [
        f"browser: {args.deltas} tokens × {args.interval_ms:g} ms per page, Chromium {CHROMIUM}{flags}, one Daphne "
        f"process, SQLite, in-memory layer; figures pool every round of a level",
        (
            f"machine: {machine['nproc']} cores, load average {machine['load_before']:.2f} before the run{busy}; "
            f"speed probe {min(machine['speed_probe_ms']):g} to {max(machine['speed_probe_ms']):g} ms"
        ),
        f"{'pages':<7}{'layout':<9}{'first p50':>10}{'first p99':>11}{'token p50':>11}{'token p99':>11}{'max':>9}"
        f"{'lost':>6}{'wall':>8}   cores busy: chromium yiweb  sim",
    ]
    for r in results:
        busy = r["cores_busy"]
        lines.append(
            f"{r['pages']:<7}{r['layout']:<9}{ms(r['ttft_ms']['p50']):>10}{ms(r['ttft_ms']['p99']):>11}"
            f"{ms(r['delta_ms']['p50']):>11}{ms(r['delta_ms']['p99']):>11}{ms(r['delta_ms']['max']):>9}"
            f"{r['lost']:>6}{r['wall_s']:>7.2f}s{'':>15}{busy['chromium']:>7.2f}{busy['yiweb']:>6.2f}"
            f"{busy['simulator']:>5.2f}"
        )
        rounds = r["per_round"]
        lines.append(
            f"{'':<16}{len(rounds['delta_p99_ms'])} rounds: first p50 "
            + ", ".join(ms(x) for x in rounds["ttft_p50_ms"])
            + "; token p50 " + ", ".join(ms(x) for x in rounds["delta_p50_ms"])
            + "; token p99 " + ", ".join(ms(x) for x in rounds["delta_p99_ms"])
        )
        lines.append(f"{'':<16}first token p50 in two: Enter to the upstream's emission {ms(r['ttft_upstream_ms']['p50'])}, "
                     f"emission to the DOM {ms(r['ttft_page_ms']['p50'])}")
        if r["wake_probe"]:
            probe = r["wake_probe"]
            lines.append(f"{'':<16}a process that sleeps 1 ms at a time woke p50 {ms(probe['p50_ms'])}, "
                         f"p99 {ms(probe['p99_ms'])}, at worst {ms(probe['max_ms'])} later; "
                         f"{probe['over_20_ms']} waits over 20 ms")
        if r["hidden_pages"] or r["failures"]:
            lines.append(f"{'':<16}{r['hidden_pages']} page readings not visible; failures: {r['failures'][:3]}")
    for t in targets:
        ratio = "" if math.isnan(t["ratio"]) else f" ({t['ratio']:.2f}× the target)"
        lines.append(f"  {'PASS' if t['pass'] else 'MISS'}  {t['pages']} pages, {t['layout']}: {t['target']}: "
                     f"{t['value']}{ratio}")
    return "\n".join(lines)


def results_write(results: list[dict], targets: list[dict], machine: dict, args) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "browser",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"pages": args.pages, "deltas": args.deltas, "interval_ms": args.interval_ms,
                     "rounds_at_least": args.rounds, "layouts": args.layouts, "chromium_args": args.chromium_arg},
        "results": results,
        "targets": targets,
    }
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tokens reaching the DOM of Chromium pages, 1 and 10 at once.")
    parser.add_argument("--pages", default="1,10", type=lambda v: sorted({int(n) for n in v.split(",")}),
                        help="pages streaming at once per level, comma-separated (default 1,10)")
    parser.add_argument("--deltas", type=int, default=200, help="tokens per answer (default 200)")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="ms between tokens (default 10)")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds per level at least (default {MIN_ROUNDS})")
    parser.add_argument("--layouts", default="windows,tabs", type=lambda v: v.split(","),
                        help="windows (a person and a window each), tabs (one person's tabs), or both (default)")
    parser.add_argument("--trace", help="write a Chromium trace of the last round of the largest level here")
    parser.add_argument("--profile", action="store_true",
                        help="V8's sampling profile of one page in the last round of the largest level")
    parser.add_argument("--wake-probe", action="store_true",
                        help="beside each level, a process that sleeps 1 ms at a time: how late this machine wakes it")
    parser.add_argument("--chromium-arg", action="append", default=[], help="one more Chromium flag (repeatable)")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        parser.error(f"{CHROMIUM} is not installed (apt-get install chromium)")
    started = time.monotonic()
    machine = machine_describe()
    results = measure(args)
    machine["load_after"] = os.getloadavg()[0]
    targets = targets_check(results)
    print(report(results, targets, machine, args))
    for layout in args.layouts if args.trace and max(args.pages) > 1 else ["windows"] if args.trace else []:
        path = Path(args.trace).with_stem(f"{Path(args.trace).stem}-{layout}")
        if path.exists():
            print("\n".join(trace_summary(str(path))))
    results_write(results, targets, machine, args)
    print(f"figures: {RESULTS.relative_to(REPO_ROOT)}; whole run {time.monotonic() - started:.0f} s")
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
