"""Issue 17, rendering, in Debian's Chromium: tables on a phone, code blocks' bar and Copy,
Copy of a whole answer, math with KaTeX, and hostile markup inside math and tables.

Black box as tests/test_browser_security.py, whose deployment it shares: yiweb with
production settings (collected static files through WhiteNoise) answering from a stand-in
model that streams whatever text a test gives it, and a local server standing for an
attacker's, which counts every request it gets.
"""

from __future__ import annotations

import os

import pytest

from tests.test_browser import CHROMIUM, browser  # noqa: F401 (fixture)
from tests.test_browser_security import (  # noqa: F401 (fixtures)
    PROBE,
    answered,
    attacker,
    body_of_last_answer,
    deployed,
    model,
    sign_up,
    violations,
    wait_answer_shown,
)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")


def new_page(browser, deployed, **context):  # noqa: F811 (fixture)
    context = browser.new_context(**context)
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
    page.add_init_script(PROBE)
    return page


PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture
def phone(browser, deployed):  # noqa: F811 (fixture)
    page = new_page(browser, deployed, **PHONE)
    yield page
    page.context.close()


@pytest.fixture
def desktop(browser, deployed):  # noqa: F811 (fixture)
    page = new_page(browser, deployed, viewport={"width": 1280, "height": 860})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=deployed)
    yield page
    page.context.close()


# --- Tables -------------------------------------------------------------------------------

FRUIT_TABLE = """Fruit prices this week:

| Fruit | Colour when ripe | Price per kilogram | Where it grows best |
|:------|:----------------:|-------------------:|---------------------|
| Apple | Red, green or yellow | 2.40 | Temperate orchards of Europe and Asia |
| Banana | Yellow | 1.10 | Tropical lowlands with heavy rainfall |
| Cherry | Dark red | 8.75 | Cool hillsides |
| Watermelon | Green outside, red inside | 0.90 | Hot summers |
"""

# For every word of every cell: the number of lines its letters are on (a word split
# between two lines has client rects on two lines).
WORDS_SPLIT = """(body) => {
  const split = [];
  for (const cell of body.querySelectorAll('th, td')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size !== 1) split.push(m[0]);
      }
    }
  }
  return split;
}"""


def test_a_table_on_a_360_px_phone_wraps_between_words_keeps_its_alignment_and_scrolls_in_its_frame(phone, deployed, model):
    sign_up(phone, deployed, "tara")
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2
    answered(phone, model, "fruit table", FRUIT_TABLE + f"\n\n| Word | Note |\n|---|---|\n| {long_word} | long |\n")
    body = body_of_last_answer(phone)
    assert body.locator("table").count() == 2
    handle = body.element_handle()
    # The cells wrap onto several lines (the table is narrower than its text), but never inside a word.
    lines = phone.evaluate("b => b.querySelector('td:last-child').getClientRects().length && "
                           "Math.round(b.querySelector('td:last-child').getBoundingClientRect().height)", handle)
    assert lines > 40, "the cell did not wrap at all"
    assert phone.evaluate(WORDS_SPLIT, handle) == []
    # Alignment as the delimiter row says: left, center, right, none (the start).
    aligns = phone.evaluate("b => [...b.querySelector('table tr:nth-child(2)').children, "
                            "...b.querySelector('thead tr').children].map(c => getComputedStyle(c).textAlign)", handle)
    assert aligns == ["left", "center", "right", "start"] * 2
    # A word longer than the screen is not broken: its table scrolls inside its own frame,
    # and the page itself does not scroll sideways.
    frame = phone.evaluate("""b => { const f = b.querySelectorAll('.table-frame')[1];
        return { scrolls: f.scrollWidth > f.clientWidth, inside: f.getBoundingClientRect().right <= innerWidth,
                 tabIndex: f.tabIndex, answer: b.scrollWidth <= b.clientWidth && b.getBoundingClientRect().right <= innerWidth }; }""",
                           handle)
    assert frame == {"scrolls": True, "inside": True, "tabIndex": 0, "answer": True}
    # The measure sees the bug it guards against: with the answer's overflow-wrap (anywhere)
    # and the old table (display: block), the same table splits words on this screen.
    split = phone.evaluate("""b => { b.querySelectorAll('table').forEach(t => {
        t.style.overflowWrap = 'anywhere'; t.style.display = 'block'; });
        return (%s)(b); }""" % WORDS_SPLIT, handle)
    assert {"Banana", "Watermelon"} <= set(split), split
    assert violations(phone) == [] and phone.problems == []


# --- Code blocks and Copy ----------------------------------------------------------------

CODE_ANSWER = """Two blocks:

```python
def greet(name):
    return f"Hello, {name}!"
```

```
plain text, no language
```
"""


def test_a_code_blocks_language_and_copy_are_shown_on_a_touch_screen_and_copy_says_copied(phone, deployed, model):
    phone.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=deployed)
    sign_up(phone, deployed, "uma")
    answered(phone, model, "code on a phone", CODE_ANSWER)
    body = body_of_last_answer(phone)
    assert phone.evaluate("matchMedia('(hover: none)').matches")
    bars = body.locator(".code-bar")
    assert bars.count() == 2
    labels = bars.evaluate_all("bars => bars.map(b => getComputedStyle(b, '::before').content)")
    assert labels == ['"python"', '""'] or labels == ['"python"', "none"]
    buttons = body.locator(".copy-code")
    for i in range(2):
        button = buttons.nth(i)
        assert button.is_visible()
        assert button.evaluate("b => getComputedStyle(b).opacity") == "1"
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] >= 24
    assert buttons.first.get_attribute("aria-label") == "Copy python code"
    buttons.first.tap()
    phone.wait_for_function("() => document.querySelector('.copy-code').textContent === 'Copied'")
    assert phone.locator("[role=status]:text-is('Copied')").count() == 1
    assert phone.evaluate("navigator.clipboard.readText()") == 'def greet(name):\n    return f"Hello, {name}!"\n'
    phone.wait_for_function("() => document.querySelector('.copy-code').textContent === 'Copy'", timeout=5000)
    assert violations(phone) == [] and phone.problems == []


def test_copy_under_an_answer_copies_its_markdown_as_the_model_wrote_it(desktop, deployed, model):
    sign_up(desktop, deployed, "vera")
    text = FRUIT_TABLE + "\n" + CODE_ANSWER + "\nAnd $x^2$ **bold**."
    answered(desktop, model, "copy all", text)
    answer = desktop.locator('[data-role="assistant"]').last
    button = answer.locator(".copy-answer")
    assert button.is_visible() and button.inner_text() == "Copy"
    button.click()
    desktop.wait_for_function("() => document.querySelector('.copy-answer').textContent === 'Copied'")
    assert desktop.evaluate("navigator.clipboard.readText()") == text
    assert desktop.locator("[role=status]:text-is('Copied')").count() == 1
    assert violations(desktop) == [] and desktop.problems == []


# --- Math --------------------------------------------------------------------------------

MATH_ANSWER = r"""The roots of $ax^2 + bx + c = 0$ are

$$
x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}
$$

In the other spellings: \(e^{i\pi} + 1 = 0\) and

\[
\int_0^1 x\,dx = \tfrac{1}{2}
\]

设$n$为正整数. A coffee costs $5 and a cake $10, so $15 in all.

`$not math$` in code, and \$escaped\$ dollars.

| quantity | formula |
|:--|:-:|
| area | $\pi r^2$ |
"""


def test_math_in_its_four_spellings_is_typeset_and_prices_code_and_escapes_are_not(desktop, deployed, model):
    sign_up(desktop, deployed, "wes")
    answered(desktop, model, "math", MATH_ANSWER)
    for when in ("streamed", "reloaded"):
        if when == "reloaded":
            desktop.reload()
            wait_answer_shown(desktop)
        body = body_of_last_answer(desktop)
        assert body.locator(".katex").count() == 6, when
        assert body.locator(".math-display .katex-display").count() == 2, when
        shown = body.inner_text()
        # What the eye sees: no TeX source (KaTeX's MathML keeps it for screen readers, hidden).
        for source in (r"\frac", r"\sqrt", r"\pi", r"\int", "$$", r"\(", r"\[", "$ax"):
            assert source not in shown, (when, source)
        assert "A coffee costs $5 and a cake $10, so $15 in all." in shown
        assert "$not math$" in shown and "$escaped$" in shown
        assert body.locator("td .katex").count() == 1
        assert body.locator(".math-error").count() == 0
        # The math is set in KaTeX's own fonts, served by this site.
        desktop.wait_for_function("() => document.fonts.check('16px KaTeX_Main') && document.fonts.check('italic 16px KaTeX_Math')")
        assert desktop.evaluate("[...document.fonts].filter(f => f.family.startsWith('KaTeX') && f.status === 'loaded').length") >= 2
        assert violations(desktop) == [], when
    assert desktop.problems == []


# Sampled at every animation frame while the answer streams: how many typeset formulas
# are on the page, how tall the answer is, and whether a formula's source is visible.
FRAME_SAMPLER = """() => {
  window.__frames = [];
  const sample = () => {
    const body = [...document.querySelectorAll('[data-role=assistant] .message-body')].pop();
    if (body) window.__frames.push({ katex: body.querySelectorAll('.katex').length,
                                     height: body.getBoundingClientRect().height,
                                     status: body.closest('[data-role]').dataset.status });
    if (!window.__stopSampling) requestAnimationFrame(sample);
  };
  requestAnimationFrame(sample);
}"""


def test_math_streams_in_without_flicker_or_the_answer_shrinking(desktop, deployed, model):
    """While the answer streams a few characters a frame, a formula once typeset stays
    typeset (the count of .katex never drops), and the answer never gets shorter: an
    unfinished $$ block shows as its source until it closes, and then its rendering
    replaces it in the same frame."""
    sign_up(desktop, deployed, "xena")
    text = "\n\n".join(
        f"Step {i}: with $a_{i} = {i}^2$ we get\n\n$$\n\\sum_{{k=1}}^{{{i}}} k = \\frac{{{i}({i}+1)}}{{2}}\n$$\n\n"
        f"and \\(b_{i}\\) follows." for i in range(1, 9))
    desktop.wait_for_function("() => document.querySelector('#model-select').options.length > 0")
    desktop.evaluate(FRAME_SAMPLER)
    answered(desktop, model, "math stream", text, piece=3, interval=0.01)
    desktop.wait_for_timeout(300)
    desktop.evaluate("window.__stopSampling = true")
    frames = desktop.evaluate("window.__frames")
    streaming = [f for f in frames if f["status"] == "streaming"]
    assert len(streaming) > 30, "too few frames sampled while streaming"
    counts = [f["katex"] for f in frames]
    assert counts == sorted(counts), "a typeset formula went back to source"
    assert counts[-1] == 8 * 3
    heights = [f["height"] for f in frames]
    drops = [(a, b) for a, b in zip(heights, heights[1:]) if b < a - 1]
    assert drops == [], f"the answer got shorter while streaming: {drops[:5]}"
    assert violations(desktop) == [] and desktop.problems == []


# --- Hostile markup in math and tables ----------------------------------------------------


def hostile_math_and_tables(url: str) -> str:
    pwn = "window.__pwned.push"
    return "\n\n".join([
        rf"$\href{{javascript:{pwn}('href')}}{{click me}}$",
        rf"$$\url{{javascript:{pwn}('url')}}$$",
        rf"\(\href{{{url}/katex-href}}{{remote}}\)",
        r"$\htmlClass{send-error}{fake error}$",
        r"$\htmlId{send-error}{fake id}$",
        rf"$\htmlStyle{{background: url({url}/katex-style)}}{{styled}}$",
        r"$\htmlData{role=alert}{data}$",
        rf"\[\includegraphics[height=1em]{{{url}/katex-image.png}}\]",
        rf"$\text{{<img src=x onerror={pwn}('img in text')>}}$",
        rf"$<svg onload={pwn}('svg in math')>$",
        rf"$$<script>{pwn}('script in math')</script>$$",
        r"$\def\a{\a\a}\a$",
        r"$\rule{100000em}{100000em}$",
        r"$\color{url(" + url + r"/katex-color)}{x}$",
        r"$\fcolorbox{red}{blue}{boxed} \pmb{bold}$",
        "| payload | cell |\n|---|:-:|\n"
        f"| <img src=\"{url}/table-img\" onerror=\"{pwn}('table img')\"> | <a href=\"javascript:{pwn}('table link')\">link</a> |\n"
        f"| [md link](javascript:{pwn}('table%20md%20link')) | <svg onload=\"{pwn}('table svg')\"><image href=\"{url}/table-svg\"/></svg> |\n"
        f"| <script>{pwn}('table script')</script> | $\\href{{javascript:{pwn}('table math')}}{{m}}$ |\n"
        f"| <details open ontoggle=\"{pwn}('table ontoggle')\"><summary>s</summary></details> | <p onclick=\"{pwn}('table onclick')\">p</p> |",
    ])


LIVE_MARKUP = """(body) => {
  const found = [];
  for (const el of body.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name)) found.push(`${el.tagName} ${a.name}`);
      if (/^\\s*(javascript|data|vbscript):/i.test(a.value)) found.push(`${el.tagName} ${a.name}=${a.value}`);
      if (['src', 'srcset', 'background', 'poster', 'xlink:href', 'action', 'formaction', 'id', 'style'].includes(a.name)
          && !(a.name === 'style' && el.closest('.katex'))) found.push(`${el.tagName} ${a.name}`);
    }
    const tag = el.tagName.toLowerCase();
    if (['script', 'img', 'image', 'iframe', 'object', 'embed', 'form', 'input', 'link', 'meta', 'style', 'foreignobject',
         'use', 'video', 'audio'].includes(tag)) found.push(tag);
    if ((tag === 'svg' || el.namespaceURI === 'http://www.w3.org/2000/svg') && !el.closest('.katex-html')) found.push(`svg ${tag}`);
    if (el.closest('.katex') && el.className && typeof el.className === 'string'
        && /send-error|alert|notice|btn/.test(el.className)) found.push(`class ${el.className}`);
  }
  return found;
}"""


def test_hostile_markup_in_math_and_tables_is_not_live_and_fetches_nothing(desktop, deployed, model, attacker):
    sign_up(desktop, deployed, "yuri")
    attacker.clear()
    answered(desktop, model, "hostile math", hostile_math_and_tables(attacker.url))
    for when in ("streamed", "reloaded"):
        if when == "reloaded":
            desktop.reload()
            wait_answer_shown(desktop)
        body = body_of_last_answer(desktop)
        body.hover()
        body.evaluate("body => body.querySelectorAll('*').forEach(el => {"
                      " el.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));"
                      " el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true })); })")
        desktop.wait_for_timeout(500)
        assert body.evaluate(LIVE_MARKUP) == [], when
        assert desktop.evaluate("window.__pwned") == [], when
        assert body.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))") == [None, None], when
        # The math that KaTeX can set is set (refused commands in its error colour), the
        # bounded ones are bounded: no 100,000 em rule, no endless macro.
        assert body.locator(".katex").count() >= 10, when
        size = body.evaluate("b => [b.scrollWidth, b.getBoundingClientRect().height]")
        assert size[0] < 2000 and size[1] < 5000, (when, size)
        assert body.locator("table").count() == 1 and body.locator("td").count() == 8
        assert violations(desktop) == [], when
    assert attacker.requests == []
    assert desktop.locator("#send-error").count() == 1
    assert desktop.problems == []
