"""What math costs the page: one render of answers with many formulas, cold and again.

In Debian's Chromium, on a blank page with the chat page's own scripts (as
tests/test_markdown_stream.py loads them): YiMarkdown.blocks() of an answer with 48
formulas, then of one with 240, each first in a fresh page (KaTeX builds every formula
and DOMPurify checks it) and then again (every formula from the cache), beside the same
text with its dollar signs taken out (no math). Five fresh pages each; min and max in ms.

    .venv/bin/python -m bench.math_render
"""

from __future__ import annotations

from playwright.sync_api import sync_playwright

from tests.simulator_server import REPO_ROOT
from tests.test_browser_rendering import MATH_ANSWER
from tests.test_markdown_stream import SCRIPTS

RUNS = 5


def answers() -> dict[str, str]:
    """Answers whose formulas all differ (so that none comes from the cache the first time)."""
    def variant(i: int) -> str:
        return (MATH_ANSWER.replace("x^2", f"x^{{{i + 2}}}").replace("4ac", f"{i}ac")
                .replace("e^{i\\pi}", f"e^{{{i}\\pi}}").replace("\\tfrac{1}{2}", f"\\tfrac{{{i}}}{{2}}")
                .replace("\\pi r^2", f"\\pi r^{{{i}}}").replace("$n$", f"$n_{{{i}}}$"))

    dense = "\n\n".join(f"Step {i}: with $a_{{{i}}} = \\frac{{{i}}}{{{i}+1}}$ and "
                        f"$$\\sum_{{k=1}}^{{{i}}} k^{{{i}}}$$ then." for i in range(120))
    return {"MATH_ANSWER x 8": "\n\n".join(variant(i) for i in range(8)), "120 steps": dense}


TIMED = """t => {
  const time = (f) => { const a = performance.now(); f(); return performance.now() - a; };
  let formulas = 0;
  const first = time(() => { formulas = YiMarkdown.blocks(t).querySelectorAll('.katex').length; });
  const again = time(() => YiMarkdown.blocks(t));
  const plain = time(() => YiMarkdown.blocks(t.replace(/\\$/g, '')));
  return { formulas, first, again, plain };
}"""


def main() -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        for name, text in answers().items():
            runs = []
            for _ in range(RUNS):
                page = browser.new_page()
                page.set_content("<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>")
                for script in SCRIPTS:
                    page.add_script_tag(path=str(REPO_ROOT / "static" / script))
                runs.append(page.evaluate(TIMED, text))
                page.close()
            span = {k: f"{min(r[k] for r in runs):.0f}-{max(r[k] for r in runs):.0f} ms" for k in ("first", "again", "plain")}
            print(f"{name}: {len(text):,} characters, {runs[0]['formulas']} formulas; "
                  f"first {span['first']}, again {span['again']}, without math {span['plain']}")
        browser.close()


if __name__ == "__main__":
    main()
