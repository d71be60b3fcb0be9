"""What reading one chunk of a Yi stream costs: the decoder's plain-piece read against a full parse.

    python bench/decode.py [--tokens 500] [--repeats 5]

A Yi answer's every chunk repeats the whole answer so far in a top-level `content`, so
late chunks are ~11 KB. `StreamDecoder.feed` reads a piece of text in the reference's
exact shape with one match (`_plain_delta`) and parses everything else (`_data`). This
feeds two 500-chunk answers, as the simulator sends them, to that decoder and to one that
parses every chunk, as the decoder did before: one of plain text (the match's case) and
one whose every piece needs an escape (what the failed match costs). Figures: CPU µs
per chunk, best of `--repeats`, the two ways interleaved; docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from chat.upstream_events import Finish, StreamDecoder, TextDelta  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "decode.json"
PASSES = 20  # answers per timing, so that one timing is ~0.1 s


def answer_lines(pieces: list[str]) -> list[bytes]:
    """An answer's lines as the simulator sends them: a piece per chunk, each chunk
    repeating the answer so far (the reference's quirk), then the finish and [DONE]."""
    head = '{"id":"cmpl-6f1e2a9c","object":"chat.completion.chunk","created":1795566101,"model":"yi-large"'

    def line(choice: dict, so_far: str) -> bytes:
        choices = json.dumps([choice], ensure_ascii=False, separators=(",", ":"))
        content = json.dumps(so_far, ensure_ascii=False)
        return f'data: {head},"choices":{choices},"content":{content},"lastOne":false}}\n\n'.encode()

    lines, so_far = [], ""
    for piece in pieces:
        so_far += piece
        lines.append(line({"delta": {"content": piece}, "index": 0}, so_far))
    lines.append(line({"delta": {}, "index": 0, "finish_reason": "stop"}, so_far))
    lines.append(b"data: [DONE]\n\n")
    return lines


ANSWERS = {
    # What bench/relay.py streams: plain text, as most prose is.
    "plain": lambda tokens: [f"t{i}@{1795566101 + i * 0.002:.6f} " for i in range(tokens)],
    # Every piece needs an escape (a quote, a new line), as code and Markdown often do:
    # the plain-piece read fails on each, and the chunk is parsed after all.
    "escaped": lambda tokens: [f'"t{i}"\n' for i in range(tokens)],
}


class ParsingDecoder(StreamDecoder):
    """The decoder as it was before the plain-piece read: every chunk parsed."""

    def _plain_delta(self, data: bytes, first: int, last: int, events: list) -> bool:
        return False


def feed_all(lines: list[bytes], decoder_class: type[StreamDecoder] = StreamDecoder) -> int:
    decoder, events = decoder_class(), 0
    for line in lines:
        events += len(decoder.feed(line))
    return events


def parse_all(lines: list[bytes]) -> int:
    return feed_all(lines, ParsingDecoder)


def cpu_per_chunk(way, lines: list[bytes]) -> float:
    started = time.process_time()
    for _ in range(PASSES):
        way(lines)
    return (time.process_time() - started) / (PASSES * len(lines)) * 1e6


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--tokens", type=int, default=500, help="chunks per answer (default 500)")
    arguments.add_argument("--repeats", type=int, default=5, help="timings of each way; the best counts (default 5)")
    args = arguments.parse_args(argv)
    print(f"decode: {args.tokens}-chunk Yi answers, CPU per chunk, best of {args.repeats}, against a decoder that")
    print("parses every chunk (the baseline; it pays one more method call per chunk, ~0.1 µs)")
    results = {}
    for name, pieces_of in ANSWERS.items():
        pieces = pieces_of(args.tokens)
        lines = answer_lines(pieces)
        # Both ways must read the same answer, or the comparison means nothing.
        events = {way: [e for line in lines for e in decoder.feed(line)] for way, decoder in
                  (("feed", StreamDecoder()), ("parse", ParsingDecoder()))}
        if not events["feed"] == events["parse"] == [*map(TextDelta, pieces), Finish("stop")]:
            print(f"  {name}: the two decoders read the answer differently; no figures")
            return 1
        timings: dict[str, list[float]] = {"feed": [], "parse": []}
        for _ in range(args.repeats):
            timings["feed"].append(cpu_per_chunk(feed_all, lines))
            timings["parse"].append(cpu_per_chunk(parse_all, lines))
        best = {way: min(values) for way, values in timings.items()}
        size = sum(map(len, lines)) / len(lines) / 1024
        print(f"  {name:<8} ({size:.1f} KB a chunk): {best['feed']:.2f} µs, baseline {best['parse']:.2f} µs, "
              f"ratio {best['feed'] / best['parse']:.2f}×")
        results[name] = {"us_per_chunk": best, "timings": timings, "kb_per_chunk": size}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "decode", "tokens": args.tokens, "answers": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
