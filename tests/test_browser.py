"""The whole product in Debian's Chromium: sign up, chat, watch it stream, reload, see it kept.

Black box: yiweb runs as a real Daphne process on its embedded defaults (SQLite, in-memory
channel layer) against the simulator over HTTP; Playwright drives /usr/bin/chromium. The
tests of how a page stays in step with the server cut its network with a TCP proxy, stop
a Redis of their own, or stop Daphne processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import statistics
import time

import pytest

from tests.first_run import readme_start
from tests.live_server import app_env, manage, running_app, running_app_and_simulator, sqlite_database
from tests.readme_pictures import readme_picture, readme_pictures_untouched  # noqa: F401 (an autouse fixture)
from tests.redis_server import own_redis, redis_server_available
from tests.tcp_proxy import CuttableProxy

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def app():
    """(base URL, path of its SQLite file). Its simulator paces tokens like the real API,
    so that streaming is visible."""
    with running_app_and_simulator(delta_ms=20) as (base, _, database):
        yield base, database


@pytest.fixture(scope="module")
def app_url(app):
    return app[0]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
    yield page
    context.close()


def sign_up(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def last_answer(page):
    return page.locator('[data-role="assistant"]').last


def test_sign_up_chat_stream_reload_and_keep(page, app_url):
    sign_up(page, app_url, "erin")
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")

    page.fill("#message-input", "Hello Yi, show me some code")
    page.keyboard.press("Enter")

    answer = last_answer(page)
    answer.wait_for()
    # It streams: while the status is still "streaming" the text visibly grows.
    page.wait_for_function(
        "() => { const m = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return m && m.dataset.status === 'streaming' && m.innerText.length > 20; }"
    )
    partial = answer.locator(".message-body").inner_text()
    assert page.locator("#stop-button").is_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-role=assistant]')].pop().dataset.status === 'complete'",
        timeout=30_000,
    )
    final = answer.locator(".message-body").inner_text()
    assert len(final) > len(partial)
    assert "Hello Yi, show me some code" in final
    # Markdown is rendered (a list, a highlighted code block), not shown as raw text.
    assert answer.locator("li").count() >= 1
    assert answer.locator("pre code.hljs").count() >= 1
    assert not page.locator("#stop-button").is_visible()

    # The page moved to the conversation's own address, and it lists it in the sidebar (by
    # the question's words, or by the title the model gives it after its first answer).
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    assert "Hello Yi" in page.locator(".conversation-item.is-current").inner_text()

    readme_picture(page, "chat.png")

    page.reload()
    kept = last_answer(page)
    kept.wait_for()
    assert kept.get_attribute("data-status") == "complete"
    assert kept.locator(".message-body").inner_text() == final
    assert page.locator('[data-role="user"] .message-body').last.inner_text().strip() == "Hello Yi, show me some code"
    assert page.problems == []


def test_first_run_from_the_root_to_sign_up_to_the_admin(page, tmp_path):
    """A new user after the README's first command: from / to the sign-in page, one click
    to sign-up, told they are the administrator, one click to the admin site. Production
    settings over plain http://, hashed static files, and not one failed request."""
    with readme_start(tmp_path) as (base, _):
        page.goto(f"{base}/")
        page.wait_for_url(f"{base}/accounts/login/?next=/")
        page.get_by_role("link", name="Create one").click()
        page.wait_for_url(f"{base}/accounts/signup/")
        assert "the first one becomes this server's administrator" in page.locator(".auth-card").inner_text()
        page.fill("input[name=username]", "owner")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        notice = page.locator(".site-messages")
        assert "As the first account, you are this server's administrator" in notice.inner_text()
        page.locator("#model-select option").nth(1).wait_for(state="attached")  # the page's script ran
        page.get_by_role("link", name="Admin").click()
        page.wait_for_url(f"{base}/admin/")
        assert page.get_by_role("heading", name="Site administration").is_visible()
        # The admin's own stylesheet came through WhiteNoise: its header is styled.
        assert page.evaluate("getComputedStyle(document.querySelector('#header')).display") == "flex"
    assert page.problems == []


def test_upstream_error_shows_its_sentence_in_the_conversation(page, app_url):
    sign_up(page, app_url, "frank")
    page.fill("#message-input", "[sim status=401]")
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-role="assistant"][data-status="error"]')
    assert "The Yi API rejected the server's API key (401)" in last_answer(page).inner_text()


def test_stop_keeps_the_partial_answer(page, app_url):
    sign_up(page, app_url, "gina")
    page.fill("#message-input", "[sim deltas=1000 interval=10]")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const m = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return m && m.innerText.includes('t5 '); }"
    )
    page.click("#stop-button")
    page.wait_for_selector('[data-role="assistant"][data-status="stopped"]')
    text = last_answer(page).locator(".message-body").inner_text()
    assert text.startswith("t0 t1 t2 t3 t4 t5") and "t999" not in text
    page.reload()
    assert last_answer(page).locator(".message-body").inner_text() == text


def test_on_a_chinese_page_the_stop_button_says_stop_and_a_stopped_answer_says_stopped(browser, app_url):
    """停止 on the button while each answer streams, 已停止 under the answer it stopped. The
    button's label is the template's until an answer ends, then the JavaScript catalog's
    (message_thread.js): which once said 已停止 ("Stopped") on the button."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    page = context.new_page()
    try:
        sign_up(page, app_url, "stop-zh")
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        for round_ in (1, 2):
            page.fill("#message-input", "[sim deltas=1000 interval=10]")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "n => document.querySelectorAll('[data-role=assistant][data-status=streaming]').length === 1"
                " && document.querySelectorAll('[data-role=assistant]').length === n", arg=round_)
            assert page.locator("#stop-button").inner_text().strip() == "停止"
            page.click("#stop-button")
            page.wait_for_selector('[data-role="assistant"][data-status="stopped"] >> nth=' + str(round_ - 1))
            assert last_answer(page).locator(".message-status-label").inner_text() == "已停止"
    finally:
        context.close()


def test_a_stopped_answers_facts_say_its_tokens_and_cost_are_estimated(page, app_url):
    """The API says what an answer used only at its end: a stopped one's figures are the
    app's estimate (chat/endings.py), and its facts say so, live and after a reload."""
    sign_up(page, app_url, "gale")
    page.fill("#message-input", "[sim deltas=1000 interval=10]")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-role=assistant]')].pop()?.innerText.includes('t5 ')")
    page.keyboard.press("Escape")
    page.wait_for_selector('[data-role="assistant"][data-status="stopped"]')
    for reloaded in (False, True):
        if reloaded:
            page.reload()
        answer = last_answer(page)
        text = answer.locator(".message-body").inner_text().strip() + " "
        out = -(-len(text) // 4)  # a quarter of a token per ASCII character, rounded up
        summary = answer.locator(".message-meta")
        assert re.fullmatch(rf"yi-large · about {out} tokens · about \$0\.0000\d+ · \d+\.\d s", summary.inner_text())
        summary.click()
        facts = dict(zip(answer.locator(".facts-list dt").all_inner_texts(), answer.locator(".facts-list dd").all_inner_texts()))
        assert facts["Tokens"] == (f"about 12 in, {out} out "
                                   "(estimated: the answer ended before the API said what it used)")
        assert facts["Cost"].startswith("about $0.0000")
        assert facts["Ended"] == "Stopped before the end."
    assert page.problems == []


def test_a_first_answer_stopped_with_esc_still_gets_a_title_in_the_list_and_the_tab(page, app_url):
    """As a finished one does, without a reload (before: it kept the question's words), with
    text or before its first word."""
    sign_up(page, app_url, "gwen")
    for question, title, shown in (
        ("Tell me about the Great Wall of China [sim deltas=1000 interval=10]",
         "Simulated: Tell me about the Great", "() => last().innerText.includes('t5 ')"),
        ("What should I cook tonight with rice [sim stall=0 stall_for=3]",
         "Simulated: What should I cook tonight", "() => last().dataset.status === 'streaming'"),
    ):
        page.goto(f"{app_url}/")
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        page.fill("#message-input", question)
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => {{ const last = () => [...document.querySelectorAll('[data-role=assistant]')].pop();"
            f" return last() && ({shown})(); }}"
        )
        page.keyboard.press("Escape")
        page.wait_for_selector('[data-role="assistant"][data-status="stopped"]')
        current = page.locator(".conversation-item.is-current")
        page.wait_for_function(
            "title => document.querySelector('.conversation-item.is-current')?.innerText.includes(title)", arg=title)
        assert question not in current.inner_text()
        page.wait_for_function("title => document.title === `${title} · yiweb`", arg=title)
    assert page.problems == []


def test_empty_message_is_not_sent(page, app_url):
    sign_up(page, app_url, "hank")
    page.fill("#message-input", "   ")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert page.locator('[data-role="user"]').count() == 0


def test_page_reconnects_by_itself_and_the_answer_arrives_whole(page, app_url):
    """The connection is reset five times mid-answer; the page resumes each time from its last seq."""
    from tests.tcp_proxy import CuttableProxy

    proxy = CuttableProxy(int(app_url.rsplit(":", 1)[1]))
    with proxy.running() as proxied:
        sign_up(page, proxied, "kate")
        page.fill("#message-input", "[sim deltas=600 interval=5]")
        page.keyboard.press("Enter")
        answer = last_answer(page)
        rng = __import__("random").Random(7)
        for _ in range(5):
            page.wait_for_timeout(rng.randint(150, 400))
            proxy.cut()
            page.wait_for_selector("#connection-status:not([hidden])", timeout=5_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-role=assistant]')].pop().dataset.status === 'complete'",
            timeout=30_000,
        )
        assert answer.locator(".message-body").inner_text().strip() == "".join(f"t{i} " for i in range(600)).strip()
        assert page.locator("#connection-status").is_hidden()


def wait_last_answer_status(page, status: str, timeout: int = 30_000) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('[data-role=assistant]')].pop()?.dataset.status === '{status}'",
        timeout=timeout,
    )


def test_reload_mid_answer_shows_the_text_so_far_and_continues_live(page, app_url):
    sign_up(page, app_url, "liam")
    page.fill("#message-input", "[sim deltas=400 interval=8]")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-role=assistant]')].pop()?.innerText.includes('t60 ')")
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    page.reload()
    answer = last_answer(page)
    answer.wait_for()
    assert answer.get_attribute("data-status") == "streaming"
    # The text so far: the last checkpoint at once, then the snapshot the page asks for.
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-role=assistant] .message-body')].pop()"
        "?.innerText.startsWith('t0 t1 t2')", timeout=2_000)
    wait_last_answer_status(page, "complete")
    assert answer.locator(".message-body").inner_text().strip() == "".join(f"t{i} " for i in range(400)).strip()


def test_retrying_upstream_shows_a_countdown_then_the_answer(page, app_url):
    sign_up(page, app_url, "mia")
    page.fill("#message-input", "[sim status=529 times=1 retry_after=2 deltas=3]")
    page.keyboard.press("Enter")
    notice = last_answer(page).locator(".retry-notice")
    notice.wait_for(state="visible")
    first = notice.inner_text()
    assert re.fullmatch(r"The Yi API is overloaded \(529\); trying again in [12] s\.", first), first
    wait_last_answer_status(page, "complete")
    assert last_answer(page).locator(".message-body").inner_text().strip() == "t0 t1 t2"
    assert notice.is_hidden()


def test_cut_stream_keeps_partial_text_and_offers_continue_and_retry(page, app_url):
    sign_up(page, app_url, "noah")
    page.fill("#message-input", "[sim deltas=20 cut=5] tell me")
    page.keyboard.press("Enter")
    wait_last_answer_status(page, "error")
    answer = last_answer(page)
    assert answer.locator(".message-body").inner_text().strip() == "t0 t1 t2 t3 t4"
    assert "closed mid-answer" in answer.locator(".message-error").inner_text()
    assert answer.locator(".retry-button").is_visible()
    answer.locator(".continue-button").click()
    wait_last_answer_status(page, "complete")
    body = last_answer(page).locator(".message-body").inner_text()
    assert body.startswith("t0 t1 t2 t3 t4") and "Continue it exactly where it stopped" in body
    assert page.locator('[data-role="assistant"]').count() == 1


# --- Staying in step with the server (docs/websocket.md) ------------------------------

EXPECTED_400 = "".join(f"t{i} " for i in range(400))


class GatedProxy(CuttableProxy):
    """A CuttableProxy that can also refuse new connections, as a network that is down,
    and send new ones to another port, as a load balancer once a process has stopped."""

    refusing = False

    async def _handle(self, client_reader, client_writer) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        await super()._handle(client_reader, client_writer)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def network_down(page, proxy: GatedProxy) -> None:
    """The page's network goes: its socket is reset and it cannot open another."""
    proxy.refusing = True
    # The reset first: under offline emulation Chromium at times missed it, and the page
    # went on believing its socket open.
    proxy.cut()
    page.context.set_offline(True)
    page.wait_for_selector("#connection-status:not([hidden])", timeout=5_000)


def network_up(page, proxy: GatedProxy) -> None:
    """The network is back; the browser says so ("online"), as it would after a blip."""
    proxy.refusing = False
    page.context.set_offline(False)


def stored(database: str, message_id: int) -> tuple[str, str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT status, content FROM chat_message WHERE id = ?", (message_id,)).fetchone()


def wait_stored_ended(database: str, message_id: int, timeout: float = 20.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while (row := stored(database, message_id))[0] == "streaming":
        assert time.monotonic() < deadline, f"answer {message_id} still streaming after {timeout} s"
        time.sleep(0.1)
    return row


def shown_messages(page) -> list[tuple[str, str, str, str]]:
    """(id, role, status, text) of every message on the page, top to bottom."""
    return [tuple(row) for row in page.eval_on_selector_all(
        "#message-list .message",
        "els => els.map(m => [m.dataset.messageId, m.dataset.role, m.dataset.status,"
        " m.querySelector('.message-body').innerText.trim()])")]


def ask_until_shown(page, text: str, token: str) -> None:
    """Send `text` from the composer and wait until the last answer shows `token`."""
    page.fill("#message-input", text)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "token => [...document.querySelectorAll('[data-role=assistant]')].pop()?.innerText.includes(token)", arg=token)


def test_answer_that_ends_while_the_socket_is_down_shows_its_stored_ending(page, app):
    """The socket is cut mid-answer and stays down until the answer has ended, so its
    `done` never reaches the page; back online, the page shows the ending as stored."""
    base, database = app
    proxy = GatedProxy(port_of(base))
    with proxy.running() as proxied:
        sign_up(page, proxied, "olga")
        ask_until_shown(page, "[sim deltas=400 interval=10]", "t40 ")
        answer = last_answer(page)
        answer_id = int(answer.get_attribute("data-message-id"))
        network_down(page, proxy)
        status, content = wait_stored_ended(database, answer_id)
        assert answer.get_attribute("data-status") == "streaming"  # the page missed the ending
        network_up(page, proxy)
        wait_last_answer_status(page, "complete", timeout=15_000)
        assert page.locator("#connection-status").is_hidden()
    assert (status, content) == ("complete", EXPECTED_400)
    assert answer.locator(".message-body").inner_text().strip() == EXPECTED_400.strip()
    assert page.locator('[data-role="assistant"]').count() == 1


def test_tab_away_while_another_tab_asks_and_is_answered_catches_up_in_order(page, app, browser):
    """While one tab is offline its answer ends and another tab asks a follow-up that is
    answered too: back online, the first tab shows what a fresh page shows, in order."""
    base, database = app
    proxy = GatedProxy(port_of(base))
    with proxy.running() as proxied:
        sign_up(page, proxied, "pia")
        ask_until_shown(page, "[sim deltas=300 interval=10] first", "t30 ")
        page.wait_for_url(re.compile(r".*/c/\d+/$"))
        path = page.url.split(proxied, 1)[1]
        first_id = int(last_answer(page).get_attribute("data-message-id"))
        network_down(page, proxy)

        other_context = browser.new_context(viewport={"width": 1280, "height": 860})
        try:
            other_context.add_cookies(page.context.cookies())
            other = other_context.new_page()
            wait_stored_ended(database, first_id)
            other.goto(base + path)
            other.fill("#message-input", "[sim deltas=20 interval=5] second")
            other.keyboard.press("Enter")
            other.wait_for_function(
                "() => document.querySelectorAll('[data-role=assistant]').length === 2"
                " && [...document.querySelectorAll('[data-role=assistant]')].pop().dataset.status === 'complete'",
                timeout=15_000)
            assert shown_messages(page)[-1][2] == "streaming"  # the away tab saw none of it

            network_up(page, proxy)
            page.wait_for_function(
                "() => document.querySelectorAll('#message-list .message').length === 4"
                " && [...document.querySelectorAll('[data-role=assistant]')].every(m => m.dataset.status === 'complete')",
                timeout=15_000)
            other.reload()
            other.locator('[data-role="assistant"]').nth(1).wait_for()
            fresh = shown_messages(other)
        finally:
            other_context.close()
    away = shown_messages(page)
    assert away == fresh
    assert [role for _, role, _, _ in away] == ["user", "assistant", "user", "assistant"]
    assert away[1][3] == "".join(f"t{i} " for i in range(300)).strip()


# Records every websocket the page opens: when it was made, opened and closed, and the
# close code. It watches the browser's own WebSocket; the page's code is untouched.
SOCKET_LOG = """(() => {
  const Native = window.WebSocket;
  const log = (window.__sockets = []);
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const entry = { created: performance.now() };
      log.push(entry);
      this.addEventListener("open", () => { entry.opened = performance.now(); });
      this.addEventListener("close", (event) => { entry.closed = performance.now(); entry.code = event.code; });
    }
  };
})();"""


@pytest.mark.skipif(not redis_server_available(), reason="redis-server is not installed (apt-get install redis-server)")
def test_answer_whose_done_never_arrives_on_an_open_socket_is_settled_by_asking_again(page, simulator_url):
    """Redis stops mid-answer: the page's socket stays open, but no broadcast reaches it,
    the `done` included. Having heard nothing of the answer for 3 s, the page subscribes
    again and gets the ending from the database, while Redis is still down."""
    expected = "".join(f"t{i} " for i in range(300))
    with own_redis() as redis, sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test", REDIS_URL=redis.url)
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, _):
            page.add_init_script(SOCKET_LOG)
            sign_up(page, base, "quinn")
            page.fill("#message-input", "[sim deltas=300 interval=10]")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-role=assistant]')].pop()?.innerText.includes('t30 ')")
            answer = last_answer(page)
            answer_id = int(answer.get_attribute("data-message-id"))
            redis.stop()
            status, content = wait_stored_ended(database_url.removeprefix("sqlite:///"), answer_id)
            ended_at = time.monotonic()
            wait_last_answer_status(page, "complete", timeout=12_000)
            took = time.monotonic() - ended_at
            sockets = page.evaluate("window.__sockets.length")
            assert not redis.answers()
    assert (status, content) == ("complete", expected)
    assert answer.locator(".message-body").inner_text().strip() == expected.strip()
    assert sockets == 1, "the page reconnected: the socket did not stay open, so this did not test asking again"
    # Silent for 3 s, checked every 1 s, and a snapshot request that may wait 2 s for a
    # generation before reading the database.
    assert took < 7, took


def test_server_told_to_stop_closes_with_4012_and_the_page_is_back_at_once(page, simulator_url):
    """Three processes in turn are told to stop (SIGTERM, as a deploy does) while the page
    is connected to them, the proxy sending new connections to the next one as a load
    balancer would: each time the page opens its next socket at once (0–0.25 s of
    jitter), where after a dropped connection it waits 0.25–0.5 s."""
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test")
        manage("migrate", "--noinput", env=env)
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(running_app(env)) for _ in range(4)]
            proxy = GatedProxy(port_of(servers[0][0]))
            proxied = stack.enter_context(proxy.running())
            page.add_init_script(SOCKET_LOG)
            sign_up(page, proxied, "rosa")
            page.wait_for_function("() => window.__sockets.length === 1 && window.__sockets[0].opened !== undefined")
            for i in range(1, len(servers)):
                # Spaced out: a second stop within 1 s of the last backs off as usual (socket.js).
                page.wait_for_timeout(1_200)
                proxy.target_port = port_of(servers[i][0])
                servers[i - 1][1].send_signal(signal.SIGTERM)
                page.wait_for_function(
                    f"() => window.__sockets.length > {i} && window.__sockets[{i}].opened !== undefined", timeout=10_000)
            log = page.evaluate("window.__sockets")
            shown = page.locator("#connection-status").is_visible()
    codes = [entry["code"] for entry in log[:-1]]
    assert codes == [4012] * 3, (
        f"close codes {codes}: the server does not close its sockets with 4012 (its 1012, service restart) "
        "when told to stop (yiweb/server.py `stopping`); without it the page backs off as for any drop")
    waits = [log[i]["created"] - log[i - 1]["closed"] for i in range(1, len(log))]
    back = [log[i]["opened"] - log[i - 1]["closed"] for i in range(1, len(log))]
    assert statistics.mean(waits) < 250 and max(waits) < 300, waits
    assert max(back) < 500, back
    assert not shown


def test_signing_out_in_another_tab_takes_this_tab_to_the_sign_in_page(page, app_url):
    """Before: the socket stayed open after sign-out and went on sending and receiving."""
    sign_up(page, app_url, "sam")
    page.wait_for_selector("#connection-status", state="hidden")
    other = page.context.new_page()
    other.goto(f"{app_url}/")
    other.click(".logout-form button[type=submit]")
    other.wait_for_url(re.compile(r".*/accounts/login/"))
    page.wait_for_selector("#send-error:not([hidden])", timeout=5_000)
    assert "You were signed out" in page.inner_text("#send-error")
    page.wait_for_url(re.compile(r".*/accounts/login/\?next=%2F$"), timeout=10_000)
