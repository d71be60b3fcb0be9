"""How fast a long history reads: the list, a 500-message conversation, search, and how soon
a new answer can be found (issue 14).

    .venv/bin/python -m bench.history [--quick] [--sqlite | --postgres] [--requests N] [--seed 1]

For each database (SQLite, then PostgreSQL in a throwaway database at POSTGRES_ADMIN_URL;
skipped, saying so, when none answers), one person's history is seeded with
`manage.py seed_history` (10,000 conversations and 200,000 messages; --quick: 1,000 and
20,000). The seeded SQLite file is kept under bench/results/history-seeded/, named by the
size, the seed and the code that made it, and copied for each run; PostgreSQL is seeded
each time. Then one Daphne process of yiweb with production settings serves it, and a
client signed in through the sign-in form times, one request after another over one
keep-alive connection, after a few warm-up requests:
  floor   GET /accounts/login/, a page that reads no history: what any request costs;
  list    GET /api/conversations and GET / (the page, with the first page of the list);
  open    GET /c/<id>/ of a 500-message conversation (the whole thread in the page);
  search  GET /api/search?q= for a rare and a common word in English and in Chinese,
          and a rare and a common 2-character Chinese word (too short for a trigram index:
          migration 0007's bigram index finds them);
  searchable  a question with a word never seen before is sent over the websocket; the
          simulator's answer quotes it; from the answer's `done` frame, searches for the
          word one after another until one finds the answer.
Then, from a process of its own on the same database, what the bigram index of migration
0007 costs: its size beside the trigram index's and the messages', and the time of the
checkpoint writes of a long streaming answer (Chinese, then English) with it, without it
(dropped), and with it again (made anew for the existing messages, as the migration does:
that time too).
Figures: docs/benchmarks.md; all of them also in bench/results/history-<database>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx

from bench.common import API_KEY, MODEL, machine_describe, ms, percentile
from bench.load import commit_describe
from tests.live_server import (
    Socket, app_env, manage, postgres_available, postgres_database, production_env, running_app,
)
from tests.simulator_server import running_simulator

RESULTS = REPO_ROOT / "bench" / "results"
SEEDED = RESULTS / "history-seeded"
USER = "history"
PASSWORD = "correct horse battery staple"
WARM_UP = 5

TARGET_LIST_P95_MS = 50.0
TARGET_OPEN_P95_MS = 100.0
TARGET_SEARCH_P95_MS = 100.0
TARGET_SEARCHABLE_MS = 1000.0

# A long answer, checkpointed as it streams: CHECKPOINTS writes of a growing text, each
# in its own transaction as chat.generation writes them, to these many characters.
LONG_ANSWER_CHARS = {"Chinese": 6000, "English": 16000}
CHECKPOINTS = 30


@dataclass(frozen=True)
class Size:
    conversations: int
    messages: int
    requests: int  # timed requests per URL or query
    probes: int  # new answers timed until searchable


FULL = Size(10_000, 200_000, 200, 10)
QUICK = Size(1_000, 20_000, 40, 3)

# (language, how common, query). The rare ones are seed_history's PLANTED texts (a known
# handful of hits); the common ones are among its most frequent words.
SEARCHES = [
    ("English", "rare", "ValueError"),
    ("English", "common", "database"),
    ("Chinese", "rare", "北京天气"),
    ("Chinese", "common", "服务器"),
    ("Chinese, 2 characters", "rare", "蝾螈"),
    ("Chinese, 2 characters", "common", "数据"),
]


# --- the database: seeded once per size (SQLite: kept between runs) -------------------------


def seed_key(size: Size, seed: int) -> str:
    """Names a seeded file by what made it: a change to the seed or the schema seeds anew."""
    code = hashlib.sha256()
    makers = [REPO_ROOT / "chat/management/commands/seed_history.py", *sorted(REPO_ROOT.glob("chat/migrations/0*.py"))]
    for path in makers:
        code.update(path.read_bytes())
    return f"{size.conversations}-{size.messages}-seed{seed}-{code.hexdigest()[:10]}"


def seed(env: dict[str, str], size: Size, seed_value: int) -> float:
    """Migrate and seed; the seconds the seed took."""
    manage("migrate", "--noinput", env=env)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "manage.py", "seed_history", "--user", USER, "--password", PASSWORD,
         "--conversations", str(size.conversations), "--messages", str(size.messages), "--seed", str(seed_value)],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True,
    )
    return time.monotonic() - started


@contextlib.contextmanager
def sqlite_seeded(size: Size, seed_value: int) -> Iterator[tuple[str, str, dict]]:
    """(DATABASE_URL, MEDIA_ROOT, how it was seeded) of a copy of the kept seeded file."""
    kept = SEEDED / seed_key(size, seed_value)
    reused = (kept / "seed.json").exists()
    if not reused:
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        env = app_env(DATABASE_URL=f"sqlite:///{kept}/yiweb.sqlite3", MEDIA_ROOT=str(kept / "media"))
        seconds = seed(env, size, seed_value)
        (kept / "seed.json").write_text(json.dumps({"seconds": seconds, "date": datetime.now(UTC).isoformat()}))
    seeded = {**json.loads((kept / "seed.json").read_text()), "kept": str(kept.relative_to(REPO_ROOT)),
              "reused": reused}
    with tempfile.TemporaryDirectory(prefix="yiweb-bench-history-") as folder:
        shutil.copytree(kept, folder, dirs_exist_ok=True)
        yield f"sqlite:///{folder}/yiweb.sqlite3", f"{folder}/media", seeded


@contextlib.contextmanager
def postgres_seeded(size: Size, seed_value: int) -> Iterator[tuple[str, str, dict]]:
    with postgres_database() as url, tempfile.TemporaryDirectory(prefix="yiweb-bench-history-") as media:
        env = app_env(DATABASE_URL=url, MEDIA_ROOT=media)
        seeded = {"seconds": seed(env, size, seed_value), "date": datetime.now(UTC).isoformat()}
        yield url, media, seeded


# --- what the history holds, and how its searches run, from a process of its own ------------


class HistoryProcess:
    """`python -m bench.history --worker`: Django on the same database, answering one JSON
    line per request: what the history holds, and the query plans of a search."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.history", "--worker"], cwd=REPO_ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the history process ended (exit code {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def worker_main() -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yiweb.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test.utils import CaptureQueriesContext

    from chat.models import Conversation, Message
    from chat.search import search

    user = get_user_model().objects.get(username=USER)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "facts":
            sizes = Conversation.objects.filter(user=user).annotate(n=Count("messages"))
            answer = {"long_id": sizes.filter(n=500).values_list("pk", flat=True).first(),
                      "conversations": sizes.count(),
                      "messages": Message.objects.filter(conversation__user=user).count(),
                      "vendor": connection.vendor}
        elif request["op"] == "explain":
            with CaptureQueriesContext(connection) as captured:
                search(user=user, query=request["query"])
            explain = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
            plans = []
            with connection.cursor() as cursor:
                for query in captured.captured_queries:
                    cursor.execute(explain + query["sql"])
                    plans.append("\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall()))
            answer = {"plans": plans}
        elif request["op"] == "bigram_cost":
            answer = bigram_cost(user)
        print(json.dumps(answer), flush=True)
    return 0


def bigram_cost(user) -> dict:
    """Migration 0007's index: its size, and checkpoint writes with it, without it, and with
    it made again for the existing messages (timed). Leaves the index as it found it."""
    import importlib
    import random

    from django.db import connection, transaction
    from django.utils import timezone

    from chat.management.commands.seed_history import Text
    from chat.models import Conversation, Message

    migration = importlib.import_module("chat.migrations.0007_search_bigrams")
    text = Text(random.Random(7))
    texts = {}
    for language, code in (("Chinese", "zh"), ("English", "en")):
        written = ""
        while len(written) < LONG_ANSWER_CHARS[language]:
            written += text.answer(code) + "\n\n"
        texts[language] = written[: LONG_ANSWER_CHARS[language]]
    conversation = Conversation.objects.filter(user=user).order_by("-id").first()

    def writes(language: str) -> dict:
        answer = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="")
        timings = []
        for k in range(1, CHECKPOINTS + 1):
            started = time.perf_counter()
            with transaction.atomic():
                Message.objects.filter(pk=answer.pk, status=Message.Status.STREAMING).update(
                    content=texts[language][: len(texts[language]) * k // CHECKPOINTS], seq=k, heartbeat_at=timezone.now()
                )
            timings.append((time.perf_counter() - started) * 1000)
        answer.delete()
        return figures(timings, last_ms=timings[-1], chars=len(texts[language]))

    def run(statements: list[str]) -> float:
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        return time.monotonic() - started

    if connection.vendor == "sqlite":
        drop, make = migration.SQLITE_BACKWARD, migration.SQLITE_TABLE + migration.SQLITE_FILL + migration.SQLITE_TRIGGERS
    else:
        drop, make = migration.POSTGRESQL_BACKWARD, migration.POSTGRESQL_FORWARD
    result = {"sizes": index_sizes(connection), "with": {language: writes(language) for language in texts}}
    run(drop)
    result["without"] = {language: writes(language) for language in texts}
    result["build_s"] = run(make)
    result["with_again"] = {language: writes(language) for language in texts}
    result["sizes_rebuilt"] = index_sizes(connection)
    return result


def index_sizes(connection) -> dict:
    """Bytes of the bigram index, the trigram index and the messages' table."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT CASE WHEN name LIKE 'chat_message_bigram%' THEN 'bigram' "
                "WHEN name LIKE 'chat_message_search%' THEN 'trigram' ELSE 'messages' END, sum(pgsize) "
                "FROM dbstat WHERE name LIKE 'chat_message_bigram%' OR name LIKE 'chat_message_search%' "
                "OR name = 'chat_message' GROUP BY 1"
            )
            sizes = dict(cursor.fetchall())
            cursor.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            sizes["database"] = cursor.fetchone()[0]
        else:
            cursor.execute(
                "SELECT pg_relation_size('chat_message_content_bigram'), pg_relation_size('chat_message_content_trgm'), "
                "pg_table_size('chat_message'), pg_database_size(current_database())"
            )
            sizes = dict(zip(("bigram", "trigram", "messages", "database"), cursor.fetchone()))
    return sizes


# --- the measurements -------------------------------------------------------------------------


def sign_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    response = client.post("/accounts/login/", data={
        "username": USER, "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"],
    }, headers={"Referer": f"{base}/accounts/login/"})
    if response.status_code != 302:
        raise RuntimeError(f"could not sign in as {USER}: {response.status_code}")
    return client


def timed(request: Callable[[], httpx.Response], count: int) -> list[float]:
    for _ in range(WARM_UP):
        request().raise_for_status()
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = request()
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def figures(timings: list[float], **extra) -> dict:
    return {"p50_ms": percentile(timings, 50), "p95_ms": percentile(timings, 95), "max_ms": max(timings),
            "count": len(timings), **extra}


def found(client: httpx.Client, query: str) -> list[int | None]:
    """The message ids a search finds (None for a title)."""
    return [hit["message_id"] for hit in client.get("/api/search", params={"q": query}).json()["results"]]


def searches_measure(client: httpx.Client, count: int) -> list[dict]:
    return [
        figures(timed(lambda: client.get("/api/search", params={"q": query}), count),
                language=language, frequency=frequency, query=query, hits=len(found(client, query)))
        for language, frequency, query in SEARCHES
    ]


async def searchable_measure(base: str, client: httpx.Client, probes: int) -> list[dict]:
    """From each answer's `done` to the first search that finds it."""
    socket = await Socket.open(base, client.cookies["sessionid"])
    measured = []
    try:
        for _ in range(probes):
            word = f"probe{uuid.uuid4().hex[:12]}"
            # interval=0: the simulator's own answer, quoting the question, at once.
            question = f"Where did {word} go? [sim interval=0]"
            await socket.send({"type": "send", "conversation_id": None, "text": question, "model": MODEL,
                               "client_id": uuid.uuid4().hex})
            frames = await socket.until(lambda f: f["type"] in ("done", "error"), timeout=60)
            done_at = time.perf_counter()
            if frames[-1]["type"] != "done" or word not in frames[-1]["message"]["content"]:
                raise RuntimeError(f"the probe's answer did not quote its word: {frames[-1]}")
            answer_id, searches = frames[-1]["message"]["id"], 0
            while True:
                searches += 1
                if answer_id in found(client, word):
                    break
                if time.perf_counter() - done_at > 30:
                    raise RuntimeError(f"answer {answer_id} not found by a search 30 s after it ended")
            measured.append({"ms": (time.perf_counter() - done_at) * 1000, "searches": searches})
    finally:
        await socket.close()
    return measured


def pages_measure(client: httpx.Client, long_id: int, count: int) -> dict:
    def get(path: str) -> dict:
        return figures(timed(lambda: client.get(path), count), path=path)

    # The floor: a page that reads no history, for what any request costs here.
    return {"floor": get("/accounts/login/"), "list": [get("/api/conversations"), get("/")],
            "open": get(f"/c/{long_id}/")}


def database_measure(database: str, size: Size, args, simulator_url: str) -> dict:
    seeded_database = sqlite_seeded if database == "sqlite" else postgres_seeded
    with seeded_database(size, args.seed) as (url, media, seeded), production_env(
        DATABASE_URL=url, MEDIA_ROOT=media, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY
    ) as env:
        earlier = " (by an earlier run)" if seeded.get("reused") else ""
        print(f"{database}: seeded in {seeded['seconds']:.0f} s{earlier}", file=sys.stderr)
        worker = HistoryProcess(env)
        try:
            facts = worker.ask(op="facts")
            with running_app(env) as (base, _), contextlib.closing(sign_in(base)) as client:
                result = {"database": database, "seeded": seeded, "facts": facts,
                          **pages_measure(client, facts["long_id"], args.requests),
                          "search": searches_measure(client, args.requests)}
                probes = asyncio.run(searchable_measure(base, client, size.probes))
                result["searchable"] = {**figures([p["ms"] for p in probes]), "probes": probes}
            result["plans"] = {q: worker.ask(op="explain", query=q)["plans"] for _, _, q in SEARCHES}
            result["bigram_cost"] = worker.ask(op="bigram_cost")
        finally:
            worker.close()
    return result


# --- the report -------------------------------------------------------------------------------


def targets_check(result: dict) -> list[dict]:
    checks = [(f"list {f['path']} p95 ≤ {TARGET_LIST_P95_MS:g} ms", f["p95_ms"], TARGET_LIST_P95_MS)
              for f in result["list"]]
    checks.append((f"open a 500-message conversation p95 ≤ {TARGET_OPEN_P95_MS:g} ms", result["open"]["p95_ms"],
                   TARGET_OPEN_P95_MS))
    checks += [(f"search {s['query']} p95 ≤ {TARGET_SEARCH_P95_MS:g} ms", s["p95_ms"], TARGET_SEARCH_P95_MS)
               for s in result["search"]]
    checks.append((f"searchable after its end, slowest ≤ {TARGET_SEARCHABLE_MS:g} ms", result["searchable"]["max_ms"],
                   TARGET_SEARCHABLE_MS))
    return [{"target": name, "value": ms(value), "pass": value <= target, "of_target": value / target}
            for name, value, target in checks]


def report(result: dict, targets: list[dict], machine: dict, args) -> str:
    facts, seeded = result["facts"], result["seeded"]
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    lines = [
        f"history on {result['database']}: {facts['conversations']:,} conversations, {facts['messages']:,} messages "
        f"(seeded in {seeded['seconds']:.0f} s{', by an earlier run' if seeded.get('reused') else ''}); "
        f"commit {machine['commit']}; {args.requests} requests per figure after {WARM_UP} warm-up ones",
        f"machine: {machine['nproc']} cores, load average {machine['load_before']:.2f} before the run{busy}; "
        f"speed probe {min(machine['speed_probe_ms']):g} to {max(machine['speed_probe_ms']):g} ms",
        f"{'':<44}{'p50':>9}{'p95':>9}{'max':>9}",
    ]

    def row(label: str, f: dict) -> str:
        # A Chinese character takes two columns of a terminal.
        wide = sum(unicodedata.east_asian_width(c) in "WF" for c in label)
        return f"{label:<{44 - wide}}{ms(f['p50_ms']):>9}{ms(f['p95_ms']):>9}{ms(f['max_ms']):>9}"

    lines.append(row("floor  GET /accounts/login/ (no history read)", result["floor"]))
    lines += [row(f"list   GET {f['path']}", f) for f in result["list"]]
    lines.append(row(f"open   GET {result['open']['path']} (500 messages)", result["open"]))
    lines.append("search GET /api/search?q=")
    lines += [row(f"  {s['language']}, {s['frequency']}: {s['query']} ({s['hits']} hits)", s) for s in result["search"]]
    probes = len(result["searchable"]["probes"])
    lines.append(row(f"searchable: done to found ({probes} answers)", result["searchable"]))
    lines.append("targets")
    lines += [f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']} ({t['of_target']:.2f}× the target)"
              for t in targets]
    lines += bigram_cost_report(result["bigram_cost"])
    slow = [s["query"] for s in result["search"] if s["p95_ms"] > TARGET_SEARCH_P95_MS]
    for query in slow:
        lines.append(f"query plan of the search for {query}:")
        lines += ["  " + line for plan in result["plans"][query] for line in plan.splitlines()]
    return "\n".join(lines)


def bigram_cost_report(cost: dict) -> list[str]:
    def mb(size: int | None) -> str:
        return "none" if size is None else f"{size / 1e6:.1f} MB"

    sizes = cost["sizes"]
    lines = [
        f"bigram index (migration 0007): {mb(sizes.get('bigram'))} (made anew: {mb(cost['sizes_rebuilt'].get('bigram'))}, "
        f"in {cost['build_s']:.1f} s); trigram index {mb(sizes.get('trigram'))}, messages {mb(sizes.get('messages'))}, "
        f"database {mb(sizes.get('database'))}",
        f"checkpoint writes of a streaming answer, {CHECKPOINTS} to its length{'':<6}{'p50':>9}{'p95':>9}{'last':>9}",
    ]
    for phase, label in (("with", "with the bigram index"), ("without", "without it"),
                         ("with_again", "with it, made anew")):
        for language, f in cost[phase].items():
            name = f"  {language}, {f['chars']:,} characters, {label}"
            lines.append(f"{name:<58}{ms(f['p50_ms']):>9}{ms(f['p95_ms']):>9}{ms(f['last_ms']):>9}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main()
    parser = argparse.ArgumentParser(description="The list, a long conversation and search, on a seeded history.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.conversations:,} conversations and "
                        f"{QUICK.messages:,} messages, {QUICK.requests} requests per figure")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sqlite", action="store_true", help="SQLite only")
    which.add_argument("--postgres", action="store_true", help="PostgreSQL only")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per figure")
    parser.add_argument("--seed", type=int, default=1, help="seed_history's --seed")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    args.requests = args.requests or size.requests
    started = time.monotonic()
    machine = {**machine_describe(), "commit": commit_describe()}
    databases = ["postgresql"] if args.postgres else ["sqlite"] if args.sqlite else ["sqlite", "postgresql"]
    with running_simulator() as simulator_url:
        for database in databases:
            if database == "postgresql" and not postgres_available():
                print("postgresql: skipped, no PostgreSQL answers at POSTGRES_ADMIN_URL "
                      "(postgresql://postgres@127.0.0.1:5432/postgres unless set)")
                continue
            result = database_measure(database, size, args, simulator_url)
            machine["load_after"] = os.getloadavg()[0]
            targets = targets_check(result)
            print(report(result, targets, machine, args))
            path = RESULTS / f"history-{database}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({
                "benchmark": "history", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
                "argv": argv, "size": asdict(size), **result, "targets": targets,
            }, indent=2, ensure_ascii=False) + "\n")
            print(f"figures: {path.relative_to(REPO_ROOT)}")
    print(f"whole run {time.monotonic() - started:.0f} s")
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
