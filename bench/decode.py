"""What reading one chunk of a Yi stream costs: the decoder's plain-piece read against a full parse.

    python bench/decode.py [--tokens 500] [--repeats 5]

A Yi answer's every chunk repeats the whole answer so far in a top-level `content`, so
late chunks are ~11 KB. `StreamDecoder.feed` reads a piece of text in the reference's
exact shape with one match (`_plain_delta`) and parses everything else (`_data`). This
feeds the same 500-chunk answer, as the simulator sends it, to that decoder and to one
that parses every chunk, as the decoder did before. Figures: CPU µs
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

from chat.upstream import StreamDecoder, TextDelta  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "decode.json"
PASSES = 20  # answers per timing, so that one timing is ~0.1 s


def answer_lines(tokens: int) -> list[bytes]:
    """The data lines of one answer, byte for byte as the simulator's `stamp=1` sends them."""
    head = '{"id":"cmpl-6f1e2a9c","object":"chat.completion.chunk","created":1795566101,"model":"yi-large"'
    lines, so_far = [], ""
    for i in range(tokens):
        piece = f"t{i}@{1795566101 + i * 0.002:.6f} "
        so_far += piece
        choices = json.dumps([{"delta": {"content": piece}, "index": 0}], separators=(",", ":"))
        lines.append(f'data: {head},"choices":{choices},"content":"{so_far}","lastOne":false}}\n\n'.encode())
    return lines


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
    arguments.add_argument("--tokens", type=int, default=500, help="chunks in the answer (default 500)")
    arguments.add_argument("--repeats", type=int, default=5, help="timings of each way; the best counts (default 5)")
    args = arguments.parse_args(argv)
    lines = answer_lines(args.tokens)
    # Both ways must read the same answer, or the comparison means nothing.
    decoder = StreamDecoder()
    fed = [e for line in lines for e in decoder.feed(line)]
    parser = ParsingDecoder()
    parsed = [e for line in lines for e in parser.feed(line)]
    assert fed == parsed == [TextDelta(f"t{i}@{1795566101 + i * 0.002:.6f} ") for i in range(args.tokens)]
    timings: dict[str, list[float]] = {"feed": [], "parse": []}
    for _ in range(args.repeats):
        timings["feed"].append(cpu_per_chunk(feed_all, lines))
        timings["parse"].append(cpu_per_chunk(parse_all, lines))
    best = {way: min(values) for way, values in timings.items()}
    size = sum(map(len, lines)) / len(lines)
    print(f"decode: one {args.tokens}-chunk Yi answer ({size / 1024:.1f} KB per chunk on average), "
          f"CPU per chunk, best of {args.repeats}")
    print(f"  feed (plain pieces matched, the rest parsed): {best['feed']:.2f} µs")
    print(f"  parse of every chunk (the baseline):          {best['parse']:.2f} µs")
    print(f"  ratio to the baseline: {best['feed'] / best['parse']:.2f}×")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "decode", "tokens": args.tokens, "us_per_chunk": best,
                                   "timings": timings}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
