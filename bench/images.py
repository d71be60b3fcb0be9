"""What an image costs on its way from a person's file to the model, and what a burst of
uploads does to answers streaming meanwhile (issue 13).

    .venv/bin/python -m bench.images [--quick] [--repeats 3] [--rounds 3] [--uploads 10]
                                     [--streams 20] [--deltas 250] [--interval-ms 20]

Files: a 12 MP and a 48 MP phone photo (JPEG with sensor noise and detail, EXIF
orientation 6 and GPS, a Display P3 profile) and a 4K screenshot (PNG, text on flat
colours), generated with Pillow into a temporary folder. Each step of each file runs in a
fresh Python process, so that its memory is its own:
  prepare  chat.attachments.image_prepare_upload, the upload view's work from the raw
           bytes to what is stored (checked, upright, stripped, sRGB, scaled to the send
           limits, with its thumbnail);
  send     chat.images.image_for_model then data_url, from the stored file to the
           `data:` URL in the request (the stored bytes themselves when within the limits).
A step's time is the median of --repeats runs, after a warm-up on a small file of the
same kind; its peak is how far the process's resident set (VmHWM, reset just before the
first run) rose over what it held with its input read, so Pillow's C buffers count, which
tracemalloc would miss. The data URL is set beside the naive one, the original file
base64-encoded.

Streaming: one Daphne process of yiweb (production settings, SQLite and MEDIA_ROOT in a
temporary folder, the in-memory layer) relays 20 answers of the simulator at once, with
`stamp=1` deltas (bench/common.py), in rounds taken in turn: alone, then while 10 other
people upload the 12 MP photo over HTTP as the page does (POST /attachments/, the file as
the body, with their session cookie and CSRF token), from half a second before the answers start, each uploading again as soon as
the last finished, until the answers end. The uploads come from a process of their own, so
the client timing the deltas does no upload work, and each carries a different JPEG
comment, so no two uploads are the same bytes.
Figures: docs/benchmarks.md; all of them also in bench/results/images.json.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx
import uvloop
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFont

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
from bench.load import commit_describe
from tests.live_server import Socket, app_env, manage, production_env, running_app, sqlite_database
from tests.simulator_server import running_simulator

RESULTS = REPO_ROOT / "bench" / "results" / "images.json"

TARGET_PREPARE_MS = 300.0  # 12 MP photo, upload to stored
TARGET_PREPARE_PEAK_MB = 150.0
TARGET_PAYLOAD_RATIO = 1 / 5  # a photo's data URL against the original file in base64
TARGET_P99_RATIO = 2.0  # per-delta p99 with uploads against without

# The uploads are under way, their images being decoded, when the first answer starts.
UPLOADS_LEAD_S = 0.5
UPLOAD_TIMEOUT_S = 120.0


# --- the files: generated as a phone and a screen would make them -----------------------


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # "photo" or "screenshot"
    media_type: str
    path: str
    warm_up: str  # a small file of the same kind, for the warm-up run
    width: int
    height: int
    size: int


def display_p3() -> bytes:
    """Display P3, as iPhones embed it: sRGB's curves with P3's primaries. Pillow builds only
    sRGB, so this is its profile with the colorants of Apple's (D50-adapted)."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    colorants = {
        b"rXYZ": (0.5151, 0.2412, -0.0011), b"gXYZ": (0.2920, 0.6922, 0.0419), b"bXYZ": (0.1571, 0.0666, 0.7841),
    }
    (count,) = struct.unpack(">I", profile[128:132])
    for i in range(count):
        tag, offset, _ = struct.unpack(">4sII", profile[132 + 12 * i : 144 + 12 * i])
        if tag in colorants:
            profile[offset + 8 : offset + 20] = struct.pack(">3i", *(round(v * 65536) for v in colorants[tag]))
    return bytes(profile)


def phone_exif() -> bytes:
    """A portrait shot: landscape pixels with orientation 6, as phones store them, and where it was taken."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "BenchPhone", "BenchPhone 15 Pro", 6  # make, model, orientation
    exif[0x0132] = "2026:12:01 10:31:07"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.6), 6: 34.0}  # GPS
    return exif.tobytes()


def photo(width: int, height: int, *, noise: float, detail: float, seed: int) -> Image.Image:
    """Shapes over a gradient, drawn at 1/8 size and scaled up (soft edges), with mid-scale
    detail and sensor noise on top: entropy close to a real photo's, so its JPEG is as big."""
    rng, small = random.Random(seed), (max(1, width // 8), max(1, height // 8))
    ramp, disc = Image.linear_gradient("L").resize(small), Image.radial_gradient("L").resize(small)
    image = Image.merge("RGB", (ramp, disc, ImageChops.invert(ramp)))
    draw = ImageDraw.Draw(image)
    for _ in range(150):
        x, y, side = rng.randrange(small[0]), rng.randrange(small[1]), rng.randrange(2, max(3, small[0] // 4))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.3:
            corners = [(x + rng.randrange(-side, side), y + rng.randrange(-side, side)) for _ in range(5)]
            draw.polygon(corners, fill=colour)
        else:
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + side, y + side * rng.uniform(0.3, 1.5)), fill=colour)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    texture = Image.effect_noise((max(1, width // 2), max(1, height // 2)), detail).resize((width, height))
    image = ImageChops.add(image, Image.merge("RGB", (texture,) * 3), 1, -128)
    grain = Image.effect_noise((width, height), noise)
    return ImageChops.add(image, Image.merge("RGB", (grain,) * 3), 1, -128)


def photo_jpeg(width: int, height: int, *, noise: float, detail: float, quality: int) -> bytes:
    out = io.BytesIO()
    photo(width, height, noise=noise, detail=detail, seed=width).save(
        out, "JPEG", quality=quality, subsampling="4:2:0", exif=phone_exif(), icc_profile=display_p3()
    )
    return out.getvalue()


WORDS = (
    "the answer model token stream upload image window request server browser message conversation "
    "latency memory thread socket process figure target chart table revenue quarter second company"
).split()


def screenshot_png(width: int, height: int) -> bytes:
    """A desktop at 4K: title bar, side bar, panes of prose and code, small text on flat colours."""
    rng, scale = random.Random(7), width / 3840
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    fonts = {size: ImageFont.load_default(size=max(6, round(size * scale))) for size in (12, 16, 22, 30)}
    mono_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
    mono = ImageFont.truetype(str(mono_path), max(6, round(16 * scale))) if mono_path.exists() else fonts[16]
    bar, side = round(60 * scale), round(560 * scale)
    draw.rectangle((0, 0, width, bar), fill=(40, 44, 52))
    draw.text((20 * scale, 14 * scale), "yiweb - Benchmarks - Chromium", font=fonts[30], fill=(230, 230, 230))
    draw.rectangle((0, bar, side, height), fill=(236, 238, 242))
    for i, y in enumerate(range(bar + 20, height - 30, round(34 * scale))):
        item = f"{i + 1:>2}. " + " ".join(rng.choices(WORDS, k=4))
        draw.text((24 * scale, y), item, font=fonts[16], fill=(50, 50, 60))
    columns = ((side + 40 * scale, width * 0.62), (width * 0.64, width - 40 * scale))
    for n, (left, right) in enumerate(columns):
        y = bar + 30 * scale
        while y < height - 60 * scale:
            if rng.random() < 0.15:  # a code block: monospace on a dark panel
                lines = rng.randrange(4, 12)
                draw.rectangle((left, y, right, y + lines * 26 * scale + 20 * scale), fill=(30, 32, 38))
                for k in range(lines):
                    code = f"{rng.choice(WORDS)}({rng.choice(WORDS)}={rng.randrange(1000)})  # {rng.choice(WORDS)}"
                    draw.text((left + 16 * scale, y + (10 + 26 * k) * scale), code, font=mono, fill=(152, 195, 121))
                y += lines * 26 * scale + 40 * scale
                continue
            size = rng.choice((12, 12, 16, 16, 22)) if n else rng.choice((16, 16, 22, 30))
            words, line = [], ""
            while draw.textlength(line, font=fonts[size]) < right - left - 200 * scale:
                words.append(rng.choice(WORDS))
                line = " ".join(words)
            colour = (20, 20, 20) if rng.random() < 0.8 else (20, 90, 200)
            draw.text((left, y), line, font=fonts[size], fill=colour)
            y += size * 1.6 * scale
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def samples_write(folder: Path) -> list[Sample]:
    # Noise and detail set so that the files weigh what phones write: 12 MP ~5 MB; 48 MP,
    # binned and denoised more by the phone, ~14 MB (under the 20 MB upload limit).
    specs = [
        ("12 MP photo", "photo", "image/jpeg", partial(photo_jpeg, noise=8, detail=20, quality=92), 4032, 3024),
        ("48 MP photo", "photo", "image/jpeg", partial(photo_jpeg, noise=4, detail=15, quality=90), 8064, 6048),
        ("4K screenshot", "screenshot", "image/png", screenshot_png, 3840, 2160),
    ]
    samples = []
    for i, (name, kind, media_type, make, width, height) in enumerate(specs):
        path, warm_up = folder / f"sample{i}", folder / f"sample{i}-small"
        path.write_bytes(make(width, height))
        warm_up.write_bytes(make(width // 16, height // 16))
        samples.append(Sample(name, kind, media_type, str(path), str(warm_up), width, height, path.stat().st_size))
    return samples


# --- one step in a fresh process -----------------------------------------------------------


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_reset() -> bool:
    """Start VmHWM again from the current resident set (Linux 4.0+); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return memory_kb("VmHWM") <= memory_kb("VmRSS") + 1024


def step_run(step: str, source: str, warm_up: str, target: str, repeats: int) -> dict:
    """In the child: warm up on the small file, then time `step` on the big one `repeats`
    times, the first with its peak memory; write what it made to `target`."""
    import django

    django.setup()
    from django.conf import settings

    from chat.attachments import image_prepare_upload
    from chat.images import data_url, image_for_model

    # The deployment's limits where the settings name them, else the function's own defaults.
    limits = {
        keyword: getattr(settings, name)
        for keyword, name in (("max_side", "IMAGE_SEND_MAX_SIDE"), ("max_side_sharp", "IMAGE_SEND_MAX_SIDE_SHARP"))
        if hasattr(settings, name)
    }

    def prepare(raw: bytes) -> tuple[bytes, dict]:
        image = image_prepare_upload(raw)
        return image.data, {"media_type": image.media_type, "width": image.width, "height": image.height}

    def send(raw: bytes) -> tuple[bytes, dict]:
        data, media_type = image_for_model(raw, **limits)
        url = data_url(data, media_type)
        return data, {"media_type": media_type, "data_url_bytes": len(url)}

    work = {"prepare": prepare, "send": send}[step]
    warm, _ = work(Path(warm_up).read_bytes())
    Path(target + "-small").write_bytes(warm)
    raw = Path(source).read_bytes()
    before_kb, exact = memory_kb("VmRSS"), peak_reset()
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    made, facts = work(raw)
    timings = [time.perf_counter() - started]
    if exact:
        peak_kb = memory_kb("VmHWM") - before_kb
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_max
    Path(target).write_bytes(made)
    facts["width"], facts["height"] = Image.open(io.BytesIO(made)).size
    del made
    for _ in range(repeats - 1):
        started = time.perf_counter()
        work(raw)
        timings.append(time.perf_counter() - started)
    return {**facts, "bytes": Path(target).stat().st_size, "ms": [t * 1000 for t in timings],
            "peak_mb": peak_kb / 1024, "peak_exact": exact}


def step_measure(step: str, source: str, warm_up: str, target: str, repeats: int) -> dict:
    command = [sys.executable, "-m", "bench.images", "--step", step, source, warm_up, target, str(repeats)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=app_env(), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{step} of {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def files_measure(samples: list[Sample], folder: Path, repeats: int) -> list[dict]:
    results = []
    for sample in samples:
        stored = str(folder / (Path(sample.path).name + "-stored"))
        prepared = step_measure("prepare", sample.path, sample.warm_up, stored, repeats)
        sent = step_measure("send", stored, stored + "-small", stored + "-sent", repeats)
        naive = len(f"data:{sample.media_type};base64,") + 4 * math.ceil(sample.size / 3)
        results.append({"sample": asdict(sample), "prepare": prepared, "send": sent, "naive_data_url_bytes": naive,
                        "payload_ratio": sent["data_url_bytes"] / naive})
        print(f"{sample.name}: measured", file=sys.stderr)
    return results


# --- uploads, from a process of their own ------------------------------------------------


def credentials(base: str, session: str) -> tuple[str, str]:
    """A signed-in person's session cookie and the CSRF token the page gives them."""
    with httpx.Client(base_url=base, cookies={"sessionid": session}, timeout=10) as client:
        client.get("/").raise_for_status()
        return session, client.cookies["csrftoken"]


def commented(jpeg: bytes, n: int) -> bytes:
    """The same photo with a JPEG comment of its own (normalising drops it)."""
    text = f"bench upload {n}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


async def upload_one(client: httpx.AsyncClient, photo_bytes: bytes) -> dict:
    started = time.time()
    try:
        # As the page sends it: the file as the body, its name in a header.
        response = await client.post("/attachments/", content=photo_bytes, headers={
            "Content-Type": "application/octet-stream", "X-File-Name": "IMG_0001.jpg"})
        status, error = response.status_code, "" if response.status_code == 201 else response.text[:200]
    except httpx.HTTPError as failure:
        status, error = 0, f"{type(failure).__name__}: {failure}"
    return {"started": started, "seconds": time.time() - started, "status": status, "error": error}


async def uploads_serve(base: str, people: list[tuple[str, str]], photo_path: str, commands, stop, results) -> None:
    photo_bytes, numbers, loop = Path(photo_path).read_bytes(), itertools.count(), asyncio.get_running_loop()
    clients = [
        httpx.AsyncClient(base_url=base, cookies={"sessionid": s, "csrftoken": t}, headers={"X-CSRFToken": t},
                          timeout=UPLOAD_TIMEOUT_S)
        for s, t in people
    ]

    async def again_and_again(client: httpx.AsyncClient) -> list[dict]:
        done = [await upload_one(client, commented(photo_bytes, next(numbers)))]
        while not stop.is_set():
            done.append(await upload_one(client, commented(photo_bytes, next(numbers))))
        return done

    try:
        while (command := await loop.run_in_executor(None, commands.get)) != "quit":
            if command == "once":
                results.put([await upload_one(clients[0], commented(photo_bytes, next(numbers)))])
            else:
                each = await asyncio.gather(*(again_and_again(c) for c in clients))
                results.put([upload for uploads in each for upload in uploads])
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def uploader_main(base: str, people: list[tuple[str, str]], photo_path: str, commands, stop, results) -> None:
    asyncio.run(uploads_serve(base, people, photo_path, commands, stop, results))


class Uploader:
    """The uploading people's process: `go` starts every one of them uploading, each again and
    again until `stop`; `finish` waits for the last uploads and returns them all."""

    def __init__(self, base: str, people: list[tuple[str, str]], photo_path: str):
        context = multiprocessing.get_context("spawn")  # no copy of this process's loop and threads
        self.commands, self.results, self.stop = context.Queue(), context.Queue(), context.Event()
        self.process = context.Process(
            target=uploader_main, args=(base, people, photo_path, self.commands, self.stop, self.results), daemon=True
        )
        self.process.start()

    def once(self) -> list[dict]:
        self.commands.put("once")
        return self.uploads_get(UPLOAD_TIMEOUT_S)

    def go(self) -> None:
        self.stop.clear()
        self.commands.put("go")

    async def finish(self) -> list[dict]:
        self.stop.set()
        return await asyncio.get_running_loop().run_in_executor(None, self.uploads_get, 2 * UPLOAD_TIMEOUT_S)

    def uploads_get(self, timeout: float) -> list[dict]:
        """The uploads of the last command; an error at once if the process died without them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"the uploading process ended (exit code {self.process.exitcode})") from None
        raise RuntimeError(f"no uploads came back within {timeout:.0f} s")

    def close(self) -> None:
        self.stop.set()
        self.commands.put("quit")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# --- streaming, alone and beside the uploads ----------------------------------------------


async def level_measure(base: str, sessions: list[str], uploader: Uploader, processes: Processes, args,
                        ) -> tuple[list[Round], list[Round], list[list[dict]]]:
    """`args.rounds` rounds each way, taking turns (the machine's speed drifts over seconds:
    alternating, both ways meet the same drift)."""
    text = f"images benchmark [sim deltas={args.deltas} interval={args.interval_ms:g} stamp=1]"
    timeout = 30 + 4 * args.deltas * args.interval_ms / 1000
    sockets = await asyncio.gather(*(Socket.open(base, session) for session in sessions))
    alone, beside, uploads = [], [], []
    try:
        await yiweb_stream(sockets[0], WARM_UP, timeout)
        for _ in range(args.rounds):
            alone.append(await round_run([yiweb_stream(s, text, timeout) for s in sockets], processes))
            uploader.go()
            await asyncio.sleep(UPLOADS_LEAD_S)
            beside.append(await round_run([yiweb_stream(s, text, timeout) for s in sockets], processes))
            uploads.append(await uploader.finish())
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return alone, beside, uploads


def uploads_figures(uploads: list[list[dict]], rounds: list[Round]) -> dict:
    done, overlapping, failures = [], 0, []
    for round_uploads, round_ in zip(uploads, rounds):
        start = min(c.sent_at for c in round_.captures)
        end = max((c.arrivals[-1][0] for c in round_.captures if c.arrivals), default=start)
        for u in round_uploads:
            if u["status"] == 201:
                done.append(u["seconds"])
                overlapping += u["started"] < end and u["started"] + u["seconds"] > start
            else:
                failures.append(f"{u['status']} {u['error']}")
    return {"completed": len(done), "overlapping_streams": overlapping, "failed": len(failures),
            "failures": failures[:5], "mean_s": statistics.fmean(done) if done else math.nan,
            "max_s": max(done, default=math.nan)}


def streaming_measure(samples: list[Sample], folder: Path, args) -> list[dict]:
    photo_sample = next(s for s in samples if s.name.startswith("12 MP"))
    log = folder / "yiweb.log"
    with (
        running_simulator() as simulator_url,
        sqlite_database() as database_url,
        tempfile.TemporaryDirectory(prefix="yiweb-bench-media-") as media,
        production_env(
            DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY, MEDIA_ROOT=media
        ) as env,
    ):
        manage("migrate", "--noinput", env=env)
        with running_app(env, log_path=log) as (base, app):
            try:
                return levels_measure(base, app.pid, photo_sample, args)
            except Exception:
                # The server's side of a failure dies with its temporary folder otherwise.
                print(f"yiweb's output, last lines:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise


def levels_measure(base: str, pid: int, photo_sample: Sample, args) -> list[dict]:
    processes = Processes(yiweb=[pid], simulator=simulator_pids())
    readers = sessions_create([base], max(args.streams), "reader")
    people = [credentials(base, s) for s in sessions_create([base], args.uploads, "uploader")]
    uploader = Uploader(base, people, photo_sample.path)
    try:
        warm = uploader.once()  # the server's first upload: its imports and its thread pool
        if warm[0]["status"] != 201:
            raise RuntimeError(f"the warm-up upload was refused: {warm[0]}")
        results = []
        for streams in args.streams:
            alone, beside, uploads = uvloop.run(level_measure(base, readers[:streams], uploader, processes, args))
            results.append(level_figures(streams, alone, beside, uploads, args.deltas))
            print(f"{streams} streams: measured", file=sys.stderr)
        return results
    finally:
        uploader.close()


def level_figures(
    streams: int, alone: list[Round], beside: list[Round], uploads: list[list[dict]], deltas: int
) -> dict:
    def figures(rounds: list[Round]) -> dict:
        per_round = [[yiweb_read(c) for c in r.captures] for r in rounds]
        pooled = stream_figures([reading for readings in per_round for reading in readings], rounds, deltas)
        pooled["per_round_delta_p99_ms"] = [stream_figures(rs, [r], deltas)["delta_ms"]["p99"]
                                            for rs, r in zip(per_round, rounds)]
        return pooled

    return {"streams": streams, "alone": figures(alone), "with_uploads": figures(beside),
            "uploads": uploads_figures(uploads, beside)}


# --- the report ---------------------------------------------------------------------------


def megabytes(size: float) -> str:
    return f"{size / 1_000_000:.2f} MB" if size < 10_000_000 else f"{size / 1_000_000:.1f} MB"


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.nan


def times(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}×"


def targets_check(files: list[dict], levels: list[dict]) -> list[dict]:
    twelve = next(f for f in files if f["sample"]["name"].startswith("12 MP"))
    prepare_ms = statistics.median(twelve["prepare"]["ms"])
    checks = [
        (f"12 MP photo prepared in ≤ {TARGET_PREPARE_MS:g} ms", ms(prepare_ms), prepare_ms, TARGET_PREPARE_MS),
        (f"12 MP photo prepared with ≤ {TARGET_PREPARE_PEAK_MB:g} MB extra peak memory",
         f"{twelve['prepare']['peak_mb']:.0f} MB", twelve["prepare"]["peak_mb"], TARGET_PREPARE_PEAK_MB),
    ]
    for f in (f for f in files if f["sample"]["kind"] == "photo"):
        checks.append((f"{f['sample']['name']}: data URL ≤ 1/5 of the naive one", f"{f['payload_ratio']:.3f}",
                       f["payload_ratio"], TARGET_PAYLOAD_RATIO))
    checks = [(name, shown, value, target, value / target) for name, shown, value, target in checks]
    for level in levels:
        alone, beside = level["alone"]["delta_ms"]["p99"], level["with_uploads"]["delta_ms"]["p99"]
        slower = ratio(beside, alone)
        checks.append((f"{level['streams']} streams: delta p99 with uploads ≤ {TARGET_P99_RATIO:g}× without",
                       f"{ms(beside)} against {ms(alone)}, {times(slower)}", slower, TARGET_P99_RATIO,
                       slower / TARGET_P99_RATIO))
        nothing_lost = clean(level["with_uploads"]) and clean(level["alone"])
        checks.append((f"{level['streams']} streams: nothing lost, with uploads or without",
                       "none lost" if nothing_lost else "see the notes above", 0 if nothing_lost else 1, 0, None))
    return [{"target": name, "value": shown, "pass": value <= target, "of_target": of_target}
            for name, shown, value, target, of_target in checks]


def image_label(step: dict) -> str:
    return f"{step['media_type'].split('/')[1].upper()} {step['width']}×{step['height']} {megabytes(step['bytes'])}"


def timing(step: dict) -> str:
    """Median, and the spread of the runs."""
    runs = step["ms"]
    spread = f" ({min(runs):.0f}–{max(runs):.0f})" if len(runs) > 1 else ""
    return f"{ms(statistics.median(runs))}{spread}"


def files_report(files: list[dict], repeats: int) -> list[str]:
    lines = [
        f"files: each step in a fresh process; time is the median of {repeats} run(s) after a warm-up (min–max); "
        "peak is the resident set's rise over the input held",
        f"{'file':<15}{'upload':>9}   {'prepare':<20}{'peak':>7}   {'stored':<25}{'send':<18}{'peak':>7}   "
        f"{'sent':<25}{'data URL':>9}{'naive':>9}{'ratio':>7}",
    ]
    for f in files:
        s, p, d = f["sample"], f["prepare"], f["send"]
        lines.append(
            f"{s['name']:<15}{megabytes(s['size']):>9}   {timing(p):<20}{p['peak_mb']:>4.0f} MB   {image_label(p):<25}"
            f"{timing(d):<18}{d['peak_mb']:>4.0f} MB   {image_label(d):<25}"
            f"{megabytes(d['data_url_bytes']):>9}{megabytes(f['naive_data_url_bytes']):>9}{f['payload_ratio']:>7.3f}"
        )
    if not all(f[step]["peak_exact"] for f in files for step in ("prepare", "send")):
        lines.append("  note  VmHWM could not be reset: peaks are ru_maxrss rises, blind under an earlier peak")
    return lines


def levels_report(levels: list[dict], args) -> list[str]:
    lines = [
        f"streaming: {args.deltas} deltas × {args.interval_ms:g} ms per answer, "
        f"{args.rounds} round(s) each way in turn, "
        f"{args.uploads} people uploading the 12 MP photo again and again beside",
        f"{'streams':<9}{'':<14}{'ttft p50':>10}{'ttft p99':>10}{'delta p50':>11}{'delta p99':>11}{'max':>9}"
        f"{'lost':>6}   cores busy: client yiweb  sim   rounds' delta p99",
    ]
    for level in levels:
        for label, key in (("alone", "alone"), ("with uploads", "with_uploads")):
            r, busy = level[key], level[key]["cores_busy"]
            lines.append(
                f"{level['streams']:<9}{label:<14}{ms(r['ttft_ms']['p50']):>10}{ms(r['ttft_ms']['p99']):>10}"
                f"{ms(r['delta_ms']['p50']):>11}{ms(r['delta_ms']['p99']):>11}{ms(r['delta_ms']['max']):>9}"
                f"{r['lost']:>6}{'':>15}{cores(busy['client']):>6}{cores(busy['yiweb']):>6}"
                f"{cores(busy['simulator']):>5}"
                f"   {', '.join(ms(p) for p in r['per_round_delta_p99_ms'])}"
            )
            if not clean(r):
                lines.append(f"  {r['seq_gaps']} seq gaps, {r['seq_repeats']} repeats, failures {r['failures'][:3]}")
        a, b = level["alone"], level["with_uploads"]
        lines.append(
            f"{'':<9}{'ratio':<14}"
            + "".join(
                f"{times(ratio(b[key][q], a[key][q])):>{width}}"
                for key, q, width in (("ttft_ms", "p50", 10), ("ttft_ms", "p99", 10), ("delta_ms", "p50", 11),
                                      ("delta_ms", "p99", 11), ("delta_ms", "max", 9))
            )
        )
        u = level["uploads"]
        lines.append(
            f"{'':<9}uploads: {u['completed']} completed ({u['overlapping_streams']} overlapping the answers), "
            f"mean {u['mean_s']:.2f} s, max {u['max_s']:.2f} s, {u['failed']} failed {u['failures']}"
        )
    return lines


def report(files: list[dict], levels: list[dict], targets: list[dict], machine: dict, args) -> str:
    busy = " (busy: other work skews every figure)" if machine["load_before"] >= machine["nproc"] / 2 else ""
    lines = [
        f"images: commit {machine['commit']}; machine: {machine['nproc']} cores, Python {machine['python']}, "
        f"load average {machine['load_before']:.2f} before the run{busy}; "
        f"speed probe {min(machine['speed_probe_ms']):g} to {max(machine['speed_probe_ms']):g} ms",
        *files_report(files, args.repeats),
        *levels_report(levels, args),
        "targets",
    ]
    for t in targets:
        of_target = f" ({t['of_target']:.2f}× the target)" if t["of_target"] is not None else ""
        lines.append(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}{of_target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--step"]:  # a child: one step of one file, its figures as JSON
        step, source, warm_up, target, repeats = argv[1:]
        print(json.dumps(step_run(step, source, warm_up, target, int(repeats))))
        return 0
    parser = parser_create("What images cost, and what uploads do to streaming answers.", streams="20",
                           interval_ms=20.0, deltas=250)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step of each file (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="streaming rounds each way (default 3)")
    parser.add_argument("--uploads", type=int, default=10, help="people uploading at once (default 10)")
    parser.add_argument("--quick", action="store_true", help="one run per step and one round each way (~1 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.rounds = 1, 1
    started = time.monotonic()
    machine = {**machine_describe(), "commit": commit_describe()}
    with tempfile.TemporaryDirectory(prefix="yiweb-bench-images-") as folder:
        samples = samples_write(Path(folder))
        print(f"files written in {time.monotonic() - started:.0f} s", file=sys.stderr)
        files = files_measure(samples, Path(folder), args.repeats)
        levels = streaming_measure(samples, Path(folder), args)
    machine["load_after"] = os.getloadavg()[0]
    targets = targets_check(files, levels)
    print(report(files, levels, targets, machine, args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "images", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
        "argv": argv, "files": files, "streaming": levels, "targets": targets,
    }, indent=2, ensure_ascii=False) + "\n")
    print(f"figures: {RESULTS.relative_to(REPO_ROOT)}; whole run {time.monotonic() - started:.0f} s")
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
