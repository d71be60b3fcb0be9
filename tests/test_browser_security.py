"""Issue 12 in Debian's Chromium: the Content-Security-Policy, hostile model output, long lines.

Black box, as tests/test_browser.py: yiweb runs as a real Daphne process, here with
production settings (DEBUG off, collected static files through WhiteNoise), and talks to
a hostile "model": an OpenAI-compatible API of this file (HostileAPI) that streams
whatever text a test puts in it. A second local server (CountingServer) stands for the
attacker's: every URL a payload names points at it, and it records every request it gets,
so "nothing was fetched" is read from a server's log, not inferred from the DOM.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest

from tests.live_server import manage, production_env, running_app, sqlite_database
from tests.simulator_server import free_port
from tests.test_browser import CHROMIUM, PASSWORD, browser, page, sign_up  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


# --- The attacker's server and the hostile model ---------------------------------------


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler], **attributes) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _CountingHandler(_QuietHandler):
    def _count(self) -> None:
        with self.server.lock:
            self.server.requests.append(f"{self.command} {self.path}")
        body = b"counted"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_OPTIONS = do_PUT = _count


class CountingServer:
    """The attacker's server: records every request made to it."""

    def __init__(self, server: http.server.ThreadingHTTPServer):
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        with self._server.lock:
            return list(self._server.requests)

    def clear(self) -> None:
        with self._server.lock:
            self._server.requests.clear()


@contextlib.contextmanager
def counting_server() -> Iterator[CountingServer]:
    with serving(_CountingHandler, requests=[], lock=threading.Lock()) as server:
        yield CountingServer(server)


class _HostileAPIHandler(_QuietHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "yi-large", "object": "model", "owned_by": "01.ai"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        question = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {}).get("content", "")
        text, piece, interval = self.server.answers.get(str(question).strip(), (f"No answer named {question!r}.", 50, 0))
        if not body.get("stream"):
            self._json(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for start in range(0, len(text), piece):
            self._event({"delta": {"content": text[start:start + piece]}, "index": 0})
            if interval:
                time.sleep(interval)
        self._event({"delta": {}, "index": 0, "finish_reason": "stop"})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, choice: dict) -> None:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "yi-large", "choices": [choice]}
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HostileAPI:
    """An OpenAI-compatible API whose answer to a question is whatever `answer()` set."""

    def __init__(self, server: http.server.ThreadingHTTPServer):
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def answer(self, question: str, text: str, *, piece: int = 40, interval: float = 0.002) -> str:
        """The model will answer `question` with `text`, `piece` characters per chunk."""
        self._server.answers[question] = (text, piece, interval)
        return question


@contextlib.contextmanager
def hostile_api() -> Iterator[HostileAPI]:
    with serving(_HostileAPIHandler, answers={}) as server:
        yield HostileAPI(server)


# --- The app as deployed, and what the page reports -------------------------------------

ADMIN = "root"
# Larger than the default (100,000), so that the page is seen to read the configured limit
# and so that a message under it can still be too big for one websocket frame.
MESSAGE_MAX_CHARS = 300_000


@pytest.fixture(scope="module")
def attacker():
    with counting_server() as server:
        yield server


@pytest.fixture(scope="module")
def model():
    with hostile_api() as api:
        yield api


@pytest.fixture(scope="module")
def deployed(model):
    """yiweb with production settings (DEBUG off, WhiteNoise), answering from the hostile
    model, with an administrator account."""
    with sqlite_database() as database_url, production_env(
        DATABASE_URL=database_url, YI_API_BASE=model.url, YI_API_KEY="sk-test",
        MESSAGE_MAX_CHARS=str(MESSAGE_MAX_CHARS),
    ) as env:
        manage("migrate", "--noinput", env=env)
        manage("shell", "-c", "from django.contrib.auth import get_user_model; "
               f"get_user_model().objects.create_superuser({ADMIN!r}, password={PASSWORD!r})", env=env)
        with running_app(env) as (base, _):
            yield base


# Installed before any page script runs, in every document the page opens: every CSP
# violation the browser reports, every task that held the main thread 50 ms or more, every
# websocket frame the page sends (its type and UTF-8 size) and every socket it opens, and
# a list that script smuggled into an answer would write to.
PROBE = """(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__csp.push({
    directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber,
    sample: e.sample }));
  window.__longtasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: "longtask", buffered: true });
  } catch (err) { /* no long task API: the list stays empty */ }
  window.__pwned = [];
  window.__sent = [];
  window.__sockets = 0;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets += 1;
      this.addEventListener("open", () => { window.__open = (window.__open || 0) + 1; });
    }
    send(data) {
      let type = null;
      try { type = JSON.parse(data).type; } catch (err) { /* not JSON */ }
      window.__sent.push({ type, bytes: new TextEncoder().encode(data).length });
      return super.send(data);
    }
  };
})();"""


def violations(page) -> list[dict]:
    return page.evaluate("window.__csp")


def answer_status(page) -> str | None:
    return page.evaluate(
        "() => { const m = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return m ? m.dataset.status + (m.hasAttribute('aria-busy') ? '+busy' : '') : null; }")


def wait_answer_shown(page, timeout: float = 30.0) -> None:
    """The last answer has ended and all its text is in the page. Polled from here, not
    with wait_for_function, whose polling runs in the page (and would be measured)."""
    deadline = time.monotonic() + timeout
    while answer_status(page) != "complete":
        assert time.monotonic() < deadline, f"the answer is {answer_status(page)!r} after {timeout} s"
        time.sleep(0.05)


def ask(page, question: str) -> None:
    page.fill("#message-input", question)
    page.keyboard.press("Enter")


def answered(page, model: HostileAPI, name: str, text: str, *, piece: int = 16, interval: float = 0.003) -> None:
    """The model answers `text` to the question `name`, streamed; wait until it is shown."""
    ask(page, model.answer(name, text, piece=piece, interval=interval))
    wait_answer_shown(page)


def body_of_last_answer(page):
    return page.locator('[data-role="assistant"] .message-body').last


# --- Every page under the policy ---------------------------------------------------------

def policy_of(header: str) -> dict[str, str]:
    """The header's directives; on error pages, the hashes of Django's own <style> blocks
    (yiweb/csp.py) are left out of style-src."""
    directives = dict(d.split(" ", 1) for d in header.split("; ") if d)
    if "style-src" in directives:
        directives["style-src"] = " ".join(s for s in directives["style-src"].split() if not s.startswith("'sha256-"))
    return directives


def test_every_page_is_served_with_the_policy_and_breaks_none_of_it(page, deployed, model):
    """Sign-in, sign-up, a 404, the chat (streaming an answer with code), a conversation,
    and the admin (its list and change pages, with the widgets its JavaScript builds) all
    carry the policy, and the browser reports no violation on any of them."""
    page.add_init_script(PROBE)
    seen: dict[str, list] = {}

    def check(path: str, status: int = 200) -> None:
        response = page.goto(deployed + path)
        assert response.status == status, path
        assert policy_of(response.headers.get("content-security-policy", "")) == POLICY, path
        page.wait_for_load_state("load")
        seen[path] = violations(page)

    check("/accounts/login/")
    check("/accounts/signup/")
    check("/no/such/page/", 404)
    check("/admin/login/")
    # Django's CSRF failure page (a form posted without its cookie): styled by its own
    # <style>, which the policy allows by hash on error responses only.
    page.context.clear_cookies()
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "nothing")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("input[type=submit], button[type=submit]")
    assert posted.value.status == 403 and policy_of(posted.value.headers["content-security-policy"]) == POLICY
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(238, 238, 238)"
    seen["CSRF failure"] = violations(page)
    sign_up(page, deployed, "amy")
    seen["/ (after sign-up)"] = violations(page)
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 0")
    answered(page, model, "show me code", "Here:\n\n```python\nprint('hi')\n```\n\nand *more*.\n\n```\nplain\n```")
    assert body_of_last_answer(page).locator("pre code.hljs").count() >= 1
    seen["/ (chat, answered)"] = violations(page)
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    check(page.url.removeprefix(deployed))

    # The admin, as its administrator.
    page.context.clear_cookies()
    page.goto(deployed + "/admin/login/")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(deployed + "/admin/")
    seen["/admin/"] = violations(page)
    for path in ["/admin/auth/user/", "/admin/chat/conversation/", "/admin/chat/message/",
                 "/admin/auth/group/add/", "/admin/auth/user/add/", "/admin/password_change/"]:
        check(path)
    page.goto(deployed + "/admin/auth/user/")
    page.click("#result_list a:text-is('amy')")
    page.wait_for_selector(".selector-chooseall")  # SelectFilter2.js built the two-box widget
    page.click(".selector-chooseall >> nth=-1")
    page.click(".datetimeshortcuts a >> nth=0")  # DateTimeShortcuts.js: "Today"
    page.click("a[id^=calendarlink]")  # opens the calendar it draws
    page.wait_for_selector(".calendarbox", state="visible")
    seen["/admin/auth/user/<id>/change/ (widgets used)"] = violations(page)
    page.click("input[name=_save]")
    page.wait_for_url(deployed + "/admin/auth/user/")
    seen["/admin/auth/user/ (after saving)"] = violations(page)

    assert {path: found for path, found in seen.items() if found} == {}
    # The 404 and CSRF failure pages themselves are the expected failures to load.
    assert [p for p in page.problems if not re.match(r"40[34] ", p) and not re.search("status of 40[34]", p)] == []


# --- Model output that would fetch a URL --------------------------------------------------


def remote_fetch_payloads(url: str) -> dict[str, str]:
    """Each entry makes a browser fetch `url/<its name>` the moment it is shown, if it is
    rendered as written (with no click)."""
    return {
        "svg-image": f'<svg width="20" height="20"><image href="{url}/svg-image" width="20" height="20"/></svg>',
        "svg-xlink-image": f'<svg><image xlink:href="{url}/svg-xlink-image" width="9" height="9"/></svg>',
        "svg-feimage": (f'<svg width="20" height="20"><filter id="f"><feImage href="{url}/svg-feimage"/></filter>'
                        '<rect width="20" height="20" filter="url(#f)"/></svg>'),
        "svg-use": f'<svg><use href="{url}/svg-use#x"/></svg>',
        "svg-style": f'<svg><style>@import url({url}/svg-style);</style><rect width="9" height="9"/></svg>',
        "svg-foreignobject": f'<svg><foreignObject width="9" height="9"><img src="{url}/svg-foreignobject"></foreignObject></svg>',
        "table-background": f'<table background="{url}/table-background"><tr><td background="{url}/td-background">cell</td></tr></table>',
        "img": f'<img src="{url}/img">',
        "img-srcset": f'<img srcset="{url}/img-srcset 1x">',
        "picture-source": f'<picture><source srcset="{url}/picture-source"><img alt="p"></picture>',
        "html-image-tag": f'<image src="{url}/html-image-tag">',
        "input-image": f'<input type="image" src="{url}/input-image">',
        "markdown-image": f"![a picture]({url}/markdown-image)",
        "markdown-image-in-link": f"[![a picture]({url}/markdown-image-in-link)](https://example.com/)",
        "style-attribute": f'<p style="background-image: url({url}/style-attribute)">styled</p>',
        "style-element": f"<style>p {{ background: url({url}/style-element) }}</style>",
        "style-image-set": f"<div style=\"background: image-set('{url}/style-image-set' 1x)\">set</div>",
        "css-variable": f'<p style="--x: url({url}/css-variable); background-image: var(--x)">variable</p>',
        "link-stylesheet": f'<link rel="stylesheet" href="{url}/link-stylesheet">',
        "link-preload": f'<link rel="preload" as="image" href="{url}/link-preload">',
        "link-prefetch": f'<link rel="prefetch" href="{url}/link-prefetch">',
        "object": f'<object data="{url}/object" width="9" height="9"></object>',
        "embed": f'<embed src="{url}/embed" width="9" height="9">',
        "iframe": f'<iframe src="{url}/iframe"></iframe>',
        "iframe-srcdoc": f'<iframe srcdoc="<img src={url}/iframe-srcdoc>"></iframe>',
        "video-poster": f'<video poster="{url}/video-poster" src="{url}/video-src" preload="auto"></video>',
        "video-source": f'<video preload="auto"><source src="{url}/video-source"><track default src="{url}/video-track"></video>',
        "audio": f'<audio src="{url}/audio" preload="auto"></audio>',
        "math": f'<math><mglyph src="{url}/math-mglyph"></mglyph><mi href="{url}/math-href">x</mi></math>',
        "meta-refresh": f'<meta http-equiv="refresh" content="0;url={url}/meta-refresh">',
        # A <base> would send every relative URL the page uses afterwards there.
        "base": f'<base href="{url}/base/">',
        "body-background": f'<body background="{url}/body-background">',
        "speculation-rules": ('<script type="speculationrules">{"prefetch": [{"source": "list", "urls": '
                              f'["{url}/speculation-rules"]}}]}}</script>'),
    }


def hostile_answer(payloads: dict[str, str]) -> str:
    return "\n\n".join(f"**{name}**\n\n{payload}" for name, payload in payloads.items())


def strip_policy(page, base: str) -> None:
    """Serve the app's pages without their Content-Security-Policy: what the renderer does
    on its own, as in a browser that ignores the header."""

    def route(route) -> None:
        if route.request.resource_type != "document":
            route.continue_()
            return
        response = route.fetch(max_redirects=0)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
        route.fulfill(response=response, headers=headers)

    page.route(f"{base}/**", route)


@pytest.mark.parametrize("policy", ["as served", "stripped"])
def test_model_output_fetches_nothing_while_streaming_and_after_reload(page, deployed, model, attacker, policy):
    """Every payload above, streamed into the page and then loaded again: the attacker's
    server gets no request at all. "stripped": the same without the page's policy, so the
    renderer alone is what keeps them out. "as served": not even an attempt (the browser
    reports no violation: nothing the renderer lets through tries to fetch)."""
    if policy == "stripped":
        strip_policy(page, deployed)
    page.add_init_script(PROBE)
    sign_up(page, deployed, f"ivy-{policy.replace(' ', '-')}")
    attacker.clear()
    payloads = remote_fetch_payloads(attacker.url)
    answered(page, model, "fetch", hostile_answer(payloads))
    page.wait_for_timeout(1000)
    while_streaming = attacker.requests
    in_page = violations(page)
    page.reload()
    wait_answer_shown(page)
    page.wait_for_timeout(1000)
    after_reload = attacker.requests[len(while_streaming):]
    assert (while_streaming, after_reload) == ([], []), "model output made the browser fetch"
    if policy == "as served":
        assert (in_page, violations(page)) == ([], [])
    names = body_of_last_answer(page).locator("strong").all_inner_texts()
    assert names == list(payloads), "the answer was not all shown"


# --- Model output that would run script ---------------------------------------------------


SCRIPT_PAYLOADS = [
    "<script>window.__pwned.push('script')</script>",
    '<img src="data:," onerror="window.__pwned.push(\'img onerror\')">',
    '<svg onload="window.__pwned.push(\'svg onload\')"><rect width="9" height="9"/></svg>',
    '<details open ontoggle="window.__pwned.push(\'details ontoggle\')"><summary>s</summary>d</details>',
    '<p onmouseover="window.__pwned.push(\'onmouseover\')" onclick="window.__pwned.push(\'onclick\')">hover me</p>',
    '<a href="javascript:window.__pwned.push(\'html javascript link\')">html javascript link</a>',
    "[markdown javascript link](javascript:window.__pwned.push('markdown%20javascript%20link'))",
    '<a href="JaVaScRiPt&colon;window.__pwned.push(\'entity javascript link\')">entity javascript link</a>',
    '<a href="data:text/html,<script>opener.__pwned.push(\'data link\')</script>">data link</a>',
    '<svg><a href="javascript:window.__pwned.push(\'svg link\')"><text y="9">svg link</text></a></svg>',
    '<math><a href="javascript:window.__pwned.push(\'math link\')">math link</a></math>',
    '<iframe srcdoc="<script>parent.__pwned.push(\'srcdoc\')</script>"></iframe>',
    '<form><button formaction="javascript:window.__pwned.push(\'formaction\')">formaction</button></form>',
    '<input autofocus onfocus="window.__pwned.push(\'autofocus\')">',
    # Mutation XSS: markup that changes meaning when serialised and parsed again.
    '<math><mtext><table><mglyph><style><img src="data:," onerror="window.__pwned.push(\'mxss\')">',
    '<noscript><p title="</noscript><img src=\'data:,\' onerror=\'window.__pwned.push(`noscript`)\'>">',
    '<svg></p><style><a id="</style><img src=\'data:,\' onerror=\'window.__pwned.push(`svg style`)\'>">',
]

# What a sanitiser bug would put in the page: the policy must refuse all of it.
BYPASS = """() => {
  const body = [...document.querySelectorAll('[data-role=assistant] .message-body')].pop();
  body.insertAdjacentHTML('beforeend', '<img src="data:," onerror="window.__pwned.push(\\'bypass onerror\\')">'
    + '<a id="bypass-link" href="javascript:window.__pwned.push(\\'bypass link\\')">bypass link</a>');
  const script = document.createElement('script');
  script.textContent = "window.__pwned.push('bypass script')";
  body.append(script);
}"""


def test_script_in_model_output_does_not_run_and_the_policy_would_refuse_it(page, deployed, model):
    page.add_init_script(PROBE)
    sign_up(page, deployed, "jack")
    answer = "\n\n".join(SCRIPT_PAYLOADS)
    for when in ("streamed", "reloaded"):
        if when == "streamed":
            answered(page, model, "script", answer)
        else:
            page.reload()
            wait_answer_shown(page)
        body = body_of_last_answer(page)
        body.hover()
        body.evaluate("body => body.querySelectorAll('a, p, summary, button, svg *, math *').forEach("
                      "el => el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true })))")
        page.wait_for_timeout(500)
        assert page.evaluate("window.__pwned") == [], f"model output ran script ({when})"
        assert violations(page) == [], f"model output tried something the policy refused ({when})"
    # Were the sanitiser to let markup through, the page's policy still runs none of it.
    page.evaluate(BYPASS)
    page.click("#bypass-link")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") == [], "inline script ran: the page has no script-src policy"
    refused = {v["directive"] for v in violations(page)}
    assert refused == {"script-src-attr", "script-src-elem"}, refused


# --- Links ------------------------------------------------------------------------------


def test_links_in_model_output_are_http_or_mailto_and_open_without_opener_or_referrer(page, deployed, model, attacker):
    page.add_init_script(PROBE)
    sign_up(page, deployed, "kim")
    links = {
        "https": ("[https](https://example.com/a)", "https://example.com/a"),
        "http": ("[http](http://example.com/b)", "http://example.com/b"),
        "mailto": ("[mail](mailto:someone@example.com)", "mailto:someone@example.com"),
        "autolink": ("see www.example.com/c", "http://www.example.com/c"),
        "html https": ('<a href="https://example.com/d">html https</a>', "https://example.com/d"),
        "relative into the app": ("[admin](/admin/)", None),
        "protocol-relative": ("[elsewhere](//example.com/e)", None),
        "fragment": ("[top](#main)", None),
        "ftp": ("[ftp](ftp://example.com/f)", None),
        "tel": ("[call](tel:+123456)", None),
        "data": ("[data](data:text/plain,hello)", None),
        "file": ("[file](file:///etc/passwd)", None),
        "blob": ("[blob](blob:https://example.com/x)", None),
        "ping": (f'<a href="https://example.com/g" ping="{attacker.url}/a-ping">ping</a>', "https://example.com/g"),
        "form action": (f'<form action="{attacker.url}/form-action"><a href="https://example.com/h">in a form</a></form>',
                        "https://example.com/h"),
    }
    answered(page, model, "links", "\n\n".join(markdown for markdown, _ in links.values()))
    found = page.evaluate("""() => [...document.querySelectorAll('[data-role=assistant] .message-body a')]
        .map(a => [a.getAttribute('href'), a.target, a.rel, a.getAttribute('referrerpolicy'), a.hasAttribute('ping')])""")
    assert [href for href, *_ in found] == [href for _, href in links.values()]
    assert {(target, rel, policy, ping) for _, target, rel, policy, ping in found} == {
        ("_blank", "noopener noreferrer", "no-referrer", False)}
    assert body_of_last_answer(page).locator("form").count() == 0


# --- The page's own look ------------------------------------------------------------------

NOTICE_PAYLOAD = """<div class="send-error" id="send-error" role="alert"><span class="send-error-text">Your session expired. Sign in again.</span></div>

<p class="notice signup-closed" aria-live="assertive">Sign-up is closed on this server.</p>

<div class="message-error" data-status="error">The Yi API rejected the API key (401).</div>

<p class="simulator-banner connection-status" style="position: fixed; top: 0">Reconnecting…</p>

<a class="btn btn-primary" href="https://example.com/">Sign in</a>

```python
print("kept")
```

<pre><code class="language-js hljs send-error">let kept = "only language-js";</code></pre>"""

# The classes our own renderer gives the answer's elements (markdown_stream.js, highlight.js;
# a code block's bar with its Copy button, .code-bar, is left out above).
OWN_CLASS = re.compile(r"^(md-settled|md-tail|md-part|copy-code|nohighlight|hljs(-[\w-]+)?|language-[\w+#.-]+)$")


def test_model_output_cannot_wear_the_pages_classes_ids_or_roles(page, deployed, model):
    page.add_init_script(PROBE)
    sign_up(page, deployed, "lou")
    answered(page, model, "notices", NOTICE_PAYLOAD)
    for when in ("streamed", "reloaded"):
        if when == "reloaded":
            page.reload()
            wait_answer_shown(page)
        attributes = page.evaluate("""() => [...document.querySelectorAll('[data-role=assistant] .message-body *')]
            .filter(el => !el.closest('.code-bar'))
            .flatMap(el => [...el.attributes].map(a => [el.tagName.toLowerCase(), a.name, a.value]))""")
        names = {name for _, name, _ in attributes}
        # Besides the sanitiser's own: the renderer's marks on code blocks (markdown.js, highlight.js).
        assert names <= {"class", "href", "target", "rel", "referrerpolicy", "data-decorated", "data-highlighted"}, (
            when, names)
        classes = {c for _, name, value in attributes if name == "class" for c in value.split()}
        assert {c for c in classes if not OWN_CLASS.match(c)} == set(), when
        assert page.locator(".send-error, .notice, .message-error, .simulator-banner, .connection-status, .btn-primary")\
            .evaluate_all("els => els.filter(el => el.closest('.message-body')).length") == 0
        assert page.locator("#send-error").count() == 1
        assert body_of_last_answer(page).locator("code.language-js").count() == 1


# --- A long single line ------------------------------------------------------------------

# One line, no newline, with some Markdown in it (emphasis, code spans) as a model writes.
_UNIT = "The quick brown fox jumps over the lazy dog, and *then* it `naps`. "
LONG_LINE = (_UNIT * (200_000 // len(_UNIT) + 1)).strip()
# What it shows: its text without the Markdown marks. (Compared without white space: the
# pieces of a long line are blocks, which break lines where the line had a space.)
LONG_LINE_SHOWN = "".join(LONG_LINE.replace("*", "").replace("`", "").split())


def longest_task_since(page, since: float) -> float:
    return page.evaluate(
        "since => Math.max(0, ...window.__longtasks.filter(t => t.start + t.duration >= since).map(t => t.duration))",
        since,
    )


@contextlib.contextmanager
def main_thread_tasks(page) -> Iterator[list[tuple[float, float]]]:
    """(thread time, wall time) in ms of every task the page's main thread ran meanwhile,
    from a Chrome trace: script, style, layout and paint of a frame are one task."""
    tasks: list[tuple[float, float]] = []
    chromium = page.context.browser
    chromium.start_tracing(page=page, categories=["toplevel"])
    try:
        yield tasks
    finally:
        events = json.loads(chromium.stop_tracing())["traceEvents"]
        main = {(e["pid"], e["tid"]) for e in events
                if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"}
        tasks += [(e.get("tdur", e["dur"]) / 1000, e["dur"] / 1000) for e in events
                  if e.get("ph") == "X" and e.get("name") == "ThreadControllerImpl::RunTask" and (e["pid"], e["tid"]) in main]


def test_a_200000_character_line_never_holds_the_page_for_100_ms(page, deployed, model):
    """From the send to the end of the final render, and while a reload renders the stored
    answer, no task holds the page's main thread for 100 ms (script, style, layout and
    paint of a frame alike). Measured as the main thread's own CPU time per task, from a
    Chrome trace: on a loaded machine the wall time of a task also counts the time the
    renderer waited for a core (a 70 ms busy loop was seen to take 29 ms of CPU), which the
    Long Tasks API cannot tell apart; its figures are printed beside."""
    page.add_init_script(PROBE)
    sign_up(page, deployed, "lena")
    question = model.answer("one long line", LONG_LINE, piece=200, interval=0.005)
    started = page.evaluate("performance.now()")
    with main_thread_tasks(page) as streaming:
        ask(page, question)
        wait_answer_shown(page, timeout=180)
        page.wait_for_timeout(300)
    streaming_wall = longest_task_since(page, started)
    shown = "".join(body_of_last_answer(page).text_content().split())
    with main_thread_tasks(page) as reloading:
        page.reload()
        wait_answer_shown(page, timeout=60)
        page.wait_for_timeout(300)
    reloading_wall = longest_task_since(page, 0)
    streaming_cpu, reloading_cpu = max(streaming)[0], max(reloading)[0]
    print(f"\nlongest main-thread task, CPU (wall): streaming and ending {streaming_cpu:.0f} ms "
          f"({max(w for _, w in streaming):.0f} ms), reload {reloading_cpu:.0f} ms ({max(w for _, w in reloading):.0f} ms); "
          f"Long Tasks API: {streaming_wall:.0f} ms, {reloading_wall:.0f} ms; "
          f"main-thread CPU in all while streaming: {sum(c for c, _ in streaming) / 1000:.1f} s")
    assert len(LONG_LINE) >= 200_000 and "\n" not in LONG_LINE
    assert shown == LONG_LINE_SHOWN
    assert streaming_cpu < 100, f"a task held the page for {streaming_cpu:.0f} ms while the line streamed or ended"
    assert reloading_cpu < 100, f"a task held the page for {reloading_cpu:.0f} ms while a reload rendered the line"


def long_answer() -> str:
    """About 100,000 characters of what a model writes, each kind of block long enough to
    be cut: paragraphs, a long heading, a tight and a loose list, quotes, a table, code
    blocks of many lines and of one long line, and a paragraph of many short lines."""
    words = "alpha beta *gamma* delta `eps` zeta [eta](https://example.com/) theta iota **kappa** mu".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(400))

    def words_from(i: int, n: int) -> str:
        return " ".join(words[(i + j * 5) % len(words)] for j in range(n))

    return "\n\n".join([
        "# " + words_from(1, 300),
        "Then a paragraph right after it.",
        text,
        "\n".join(f"- item {i} " + words_from(i, 9) for i in range(150)),
        "\n\n".join(f"{i + 1}. step " + words_from(i, 12) for i in range(60)),
        "> " + words_from(3, 700) + "\n> and the quote goes on",
        "\n".join("> " + words_from(i, 12) for i in range(150)) + "\n>\n> a second paragraph in the quote",
        "| n | words |\n|---|---|\n" + "\n".join(f"| {i} | {words_from(i, 4)} |" for i in range(120)),
        "```python\n" + "\n".join(f"value_{i} = {i}  # {words_from(i, 4)}" for i in range(700)) + "\n```",
        "```\n" + "0123456789abcdef" * 1500 + "\n```",
        "\n".join(words_from(i, 14) for i in range(150)),
        "The end.",
    ])


SHAPE = """([text, body]) => {
  const whole = document.createElement('div');
  whole.append(YiMarkdown.blocks(text));
  const shape = (root) => Object.fromEntries(['h1', 'p', 'ul', 'ol', 'li', 'blockquote', 'table', 'tr', 'pre', 'strong', 'a']
    .map(t => [t, root.querySelectorAll(t).length]));
  const letters = (root) => root.textContent.replace(/\\s+/g, '').replace(/Copy/g, '');
  return { shown: shape(body), whole: shape(whole), sameText: letters(body) === letters(whole) };
}"""


def test_a_long_answer_in_pieces_shows_what_one_whole_render_shows(page, deployed, model):
    """The pieces a long answer is cut into (markdown_stream.js) show the same text as one
    render of the whole, with the same headings, lists, quotes, tables and code blocks:
    while it streams into the page and when a reload renders it in one go."""
    page.add_init_script(PROBE)
    sign_up(page, deployed, "nell")
    text = long_answer()
    assert len(text) > 90_000
    answered(page, model, "long answer", text, piece=300, interval=0.002)
    for when in ("streamed", "reloaded"):
        if when == "reloaded":
            page.reload()
            wait_answer_shown(page)
        body = body_of_last_answer(page).element_handle()
        found = page.evaluate(SHAPE, [text, body])
        assert found["sameText"], when
        assert found["shown"] == found["whole"], when
    assert violations(page) == []


# --- A message too long to send -------------------------------------------------------------


@pytest.mark.parametrize("text, refusal", [
    ("x" * (MESSAGE_MAX_CHARS + 1),
     r"That message is too long \(300,001 characters; the limit is 300,000\)\. Shorten it or split it\."),
    # Under the character limit, but 4 bytes a character: one frame would be over 1 MiB,
    # which Daphne drops without a word.
    ("😀" * 270_000,
     r"That message is too long to send \(1,080,\d{3} bytes; the limit is 1,000,000\)\. Shorten it or split it\."),
], ids=["over MESSAGE_MAX_CHARS", "over 1 MiB"])
def test_a_message_too_long_is_refused_in_the_page_and_kept_in_the_box(page, deployed, text, refusal):
    page.add_init_script(PROBE)
    sign_up(page, deployed, f"max-{len(text)}")
    page.wait_for_function("() => window.__open === 1")  # connected
    page.fill("#message-input", text)
    page.keyboard.press("Enter")
    page.wait_for_timeout(2000)
    assert re.fullmatch(refusal, page.locator("#send-error-text").inner_text())
    assert page.input_value("#message-input") == text
    assert [f for f in page.evaluate("window.__sent") if f["type"] == "send"] == []
    assert page.evaluate("window.__sockets") == 1  # no reconnect
    assert page.locator('[data-role="user"]').count() == 0
