"""The streaming renderer (static/chat/markdown_stream.js) shows what one whole render shows.

Run in Debian's Chromium with the page's own scripts (the vendored marked, DOMPurify,
highlight.js and KaTeX, then markdown_math.js, markdown.js, markdown_stream.js) in a blank
page: no server. For long answers with code, tables, lists, quotes and math, cut at
random points (a fixed seed): the text up to a cut, streamed in random pieces with a
render between each, shows the same DOM (settled part plus tail) as one render of that
text; and the whole answer, streamed on from the cut and finished, shows the same as one
render of the whole. Compared with what highlighting adds taken off (the settled part's
code is highlighted, the tail's is not yet) and the renderer's own wrappers unwrapped.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.simulator_server import REPO_ROOT
from tests.test_browser import CHROMIUM, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")

SCRIPTS = [
    "vendor/marked/marked.umd.js",
    "vendor/dompurify/purify.min.js",
    "vendor/highlightjs/highlight.min.js",
    "vendor/katex/katex.min.js",
    "chat/markdown_math.js",
    "chat/markdown.js",
    "chat/markdown_stream.js",
]

SEED = 17
CUTS_PER_ANSWER = 40

# In the page: the DOM of `root` as a string, without what differs by design between the
# settled part and the tail (highlighting, the decorated mark) and without the renderer's
# own wrappers; white space between blocks dropped.
HARNESS = r"""
window.shape = (root) => {
  const c = root.cloneNode(true);
  c.querySelectorAll('.md-settled, .md-tail').forEach((e) => e.replaceWith(...e.childNodes));
  c.querySelectorAll('pre code').forEach((code) => {
    const text = code.textContent;
    code.textContent = text;
    // The language Markdown named, which the block's bar shows (highlight.js adds classes:
    // language-javascript beside language-js, the language it guessed for a block with none).
    const bar = code.parentElement.querySelector('.code-bar');
    const lang = bar && bar.dataset.language;
    if (lang) code.className = `language-${lang}`; else code.removeAttribute('class');
  });
  c.querySelectorAll('[data-decorated]').forEach((e) => e.removeAttribute('data-decorated'));
  c.querySelectorAll('[data-highlighted]').forEach((e) => e.removeAttribute('data-highlighted'));
  const walker = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
  const blank = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.data.trim() && !n.parentElement.closest('pre, code, .katex')) blank.push(n);
  }
  blank.forEach((n) => n.remove());
  c.normalize();
  return c.innerHTML;
};
window.whole = (text) => {
  const div = document.createElement('div');
  div.append(YiMarkdown.blocks(text));
  YiMarkdown.decorateCode(div);
  return shape(div);
};
// Streams `pieces` (text in order) into a fresh renderer, rendering after each; then, if
// `rest` is given, streams those and finishes with the whole text.
window.streamed = (pieces, rest) => {
  const box = document.createElement('div');
  document.body.append(box);
  const md = new YiMarkdown.StreamingMarkdown(box);
  for (const piece of pieces) { md.append(piece); while (md.render(Infinity)) {} }
  const atCut = shape(box);
  let atEnd = null;
  if (rest) {
    for (const piece of rest) { md.append(piece); while (md.render(Infinity)) {} }
    let more = md.finish(md.text);
    while (more) more = md.render(Infinity);
    atEnd = shape(box);
  }
  box.remove();
  return { atCut, atEnd };
};
"""


def words(rng: random.Random, n: int) -> str:
    vocabulary = ("alpha beta gamma delta *epsilon* zeta `eta` theta iota kappa **lambda** mu nu xi "
                  "omicron pi rho sigma tau [upsilon](https://example.com/u) phi chi psi omega 价格 数学").split()
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def answer(rng: random.Random, blocks: int) -> str:
    """A long answer as a model writes one: headings, paragraphs with inline math and a
    price, display math in its four spellings, tight and loose lists, nested lists, quotes,
    tables with alignment and math in cells, fenced code of several languages."""
    parts = []
    for i in range(blocks):
        kind = rng.choice(["heading", "paragraph", "math", "list", "loose", "nested", "quote", "table", "code"])
        if kind == "heading":
            parts.append(f"{'#' * rng.randint(1, 3)} Section {i}: {words(rng, 4)}")
        elif kind == "paragraph":
            parts.append(f"{words(rng, 20)} with $x_{i}^2 + y$ and \\(\\alpha_{i}\\), "
                         f"costing $5 and $10 here.\n{words(rng, 12)} $\\frac{{a}}{{b}}$, done.")
        elif kind == "math":
            spelling = rng.choice([
                f"$$\n\\int_0^{{{i}}} f(x)\\,dx = \\sum_{{k=1}}^n k^2\n$$",
                f"\\[\n\\begin{{aligned}} a &= b + {i} \\\\ c &= d \\end{{aligned}}\n\\]",
                f"Display inline: $$e^{{i\\pi}} + {i} = 0$$ and \\[\\sqrt{{{i}}}\\] in a line.",
                f"The formula:\n$$\n\\mathbf{{F}} = m\\mathbf{{a}}_{i}\n$$\nand the text goes on.",
            ])
            parts.append(spelling)
        elif kind == "list":
            parts.append("\n".join(f"- item {j}: {words(rng, 6)} $n_{j}$" for j in range(rng.randint(2, 8))))
        elif kind == "loose":
            parts.append("\n\n".join(f"{j + 1}. step {words(rng, 8)}" for j in range(rng.randint(2, 5))))
        elif kind == "nested":
            parts.append(f"- outer {words(rng, 3)}\n  - inner $a_{i}$ {words(rng, 3)}\n  - inner two\n- outer two")
        elif kind == "quote":
            parts.append("\n".join(f"> {words(rng, 8)}" for _ in range(rng.randint(1, 4))))
        elif kind == "table":
            rows = "\n".join(f"| {words(rng, 2)} | ${j}^2$ | {j * 3.5} |" for j in range(rng.randint(2, 9)))
            parts.append(f"| Fruit name | Square | Price |\n|:---|:---:|---:|\n{rows}")
        else:
            lang = rng.choice(["python", "js", "", "rust"])
            body = "\n".join(f"value_{j} = compute({j})  # $not math$ {words(rng, 3)}" for j in range(rng.randint(3, 30)))
            parts.append(f"```{lang}\n{body}\n```")
    return "\n\n".join(parts)


def fixtures() -> list[str]:
    rng = random.Random(SEED)
    # Two under FULL_RENDER_MAX (10,000 characters: rendered whole once more at the end) and
    # three over it (kept in pieces to the end).
    return [answer(rng, n) for n in (12, 24, 90, 130, 200)]


def pieces_of(rng: random.Random, text: str) -> list[str]:
    """text in 1 to 8 pieces of random sizes (a frame sees several tokens at once)."""
    count = rng.randint(1, 8)
    cuts = sorted(rng.randrange(len(text) + 1) for _ in range(count - 1))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.fixture(scope="module")
def renderer(browser):  # noqa: F811 (fixture)
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.set_content("<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>")
    for script in SCRIPTS:
        page.add_script_tag(path=str(REPO_ROOT / "static" / script))
    page.add_script_tag(content=HARNESS)
    page.problems = problems
    yield page
    context.close()


def test_the_fixtures_hold_what_they_are_meant_to():
    texts = fixtures()
    assert [len(t) > 10_000 for t in texts] == [False, False, True, True, True]
    for needle in ("$$\n", "\\[", "\\(", "$5 and $10", "```python", "|:---:|", "\n\n2. step", "  - inner"):
        assert any(needle in t for t in texts), needle


def test_the_text_up_to_any_cut_shows_what_one_render_of_it_shows_and_so_does_the_whole(renderer):
    rng = random.Random(SEED)
    started = time.monotonic()
    failures = []
    checked = 0
    for index, text in enumerate(fixtures()):
        expected_whole = renderer.evaluate("t => whole(t)", text)
        for _ in range(CUTS_PER_ANSWER):
            cut = rng.randrange(1, len(text))
            head, tail = text[:cut], text[cut:]
            found = renderer.evaluate("([p, r]) => streamed(p, r)", [pieces_of(rng, head), pieces_of(rng, tail)])
            expected_cut = renderer.evaluate("t => whole(t)", head)
            checked += 1
            if found["atCut"] != expected_cut:
                failures.append((index, cut, "at the cut", head[-80:]))
            if found["atEnd"] != expected_whole:
                failures.append((index, cut, "whole", head[-80:]))
    elapsed = time.monotonic() - started
    print(f"\n{checked} cuts of {len(fixtures())} answers "
          f"({', '.join(str(len(t)) for t in fixtures())} characters) in {elapsed:.1f} s")
    assert failures == []
    assert renderer.problems == []


def test_an_unfinished_display_block_shows_its_source_until_it_closes_then_its_math(renderer):
    found = renderer.evaluate(r"""() => {
      const box = document.createElement('div');
      document.body.append(box);
      const md = new YiMarkdown.StreamingMarkdown(box);
      const seen = [];
      for (const piece of ['Before.\n\n$$\n', '\\int_0^1 x', '\\,dx\n', '$$', '\n\nAfter, $5 and $10.']) {
        md.append(piece);
        while (md.render(Infinity)) {}
        seen.push([box.querySelectorAll('.katex').length, box.textContent.includes('$$')]);
      }
      box.remove();
      return seen;
    }""")
    assert found == [[0, True], [0, True], [0, True], [1, False], [1, False]]


def test_an_answer_not_streamed_here_shows_what_one_render_shows_and_much_math_takes_several_frames(renderer):
    """A reload or an opened conversation: finish() on a fresh renderer. An answer with
    much math (or over 10,000 characters) is rendered in pieces, as many a frame as the
    frame's budget takes (how many frames that is depends on the machine's speed, so what
    is checked is that it goes piece by piece); it ends showing what one render shows."""
    for text in fixtures():
        found = renderer.evaluate("""t => {
          const box = document.createElement('div');
          document.body.append(box);
          const md = new YiMarkdown.StreamingMarkdown(box);
          for (let more = md.finish(t); more;) more = md.render(performance.now() + 10);
          const shown = shape(box);
          box.remove();
          return { pieces: md.scanner.cuts.length, same: shown === whole(t) };
        }""", text)
        assert found["same"], len(text)
        assert found["pieces"] > 1, len(text)
    # (A price's $ counts too: an answer with forty of them is rendered in pieces, alike.)
    plain = "Just *words* and `code`, costing 5 and 10 euros.\n\n" * 50
    assert renderer.evaluate("""t => { const box = document.createElement('div'); document.body.append(box);
        return new YiMarkdown.StreamingMarkdown(box).finish(t); }""", plain) is False
