"""A 360 x 740 phone, in Debian's Chromium with touch: every page fits the screen in
either language, the conversation list is a drawer, the message box stays above the
on-screen keyboard."""

from __future__ import annotations

import os

import pytest

from tests.live_server import running_app_and_simulator
from tests.readme_pictures import readme_picture, readme_pictures_untouched  # noqa: F401 (an autouse fixture)
from tests.test_browser import browser  # noqa: F401 (a fixture: Debian's Chromium, one per module)
from tests.test_browser_a11y import settled, sign_up

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 360, "height": 740}

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def app_url():
    with running_app_and_simulator(delta_ms=5) as (base, _, _database):
        yield base


def conversation_had(page) -> None:
    """A question asked and answered: the page is now that conversation's, at its address."""
    page.fill("#message-input", "Hello")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-role=assistant][data-status=complete]", timeout=30_000)
    page.wait_for_function("() => location.pathname.startsWith('/c/')")


def phone(browser, language: str = "en-US"):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale=language, reduced_motion="reduce")
    return context, context.new_page()


def too_wide(page) -> list[str]:
    """What sticks out past the screen's right edge (and so makes the page scroll sideways),
    leaving out what is inside a box that scrolls by itself (a code block, a table's frame)
    and what is hidden."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const inScroller = (el) => {
            for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
              const style = getComputedStyle(p);
              if (/(auto|scroll|hidden|clip)/.test(style.overflowX)) return true;
            }
            return false;
          };
          const wide = [];
          for (const el of document.body.querySelectorAll('*')) {
            const box = el.getBoundingClientRect();
            if (!box.width || box.right <= width + 0.5 || inScroller(el)) continue;
            if (getComputedStyle(el).visibility === 'hidden') continue;
            wide.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} right=${Math.round(box.right)}`);
          }
          const scrolled = document.documentElement.scrollWidth;
          if (scrolled > width) wide.push(`page scrollWidth=${scrolled}`);
          return wide;
        }"""
    )


def overlapping(page) -> list[str]:
    """Pairs of the top bar's controls drawn over each other (a bar too full squeezes them
    together, which no right edge shows)."""
    return page.evaluate(
        """() => {
          const boxes = [...document.querySelectorAll(
            '.topbar .btn, .topbar .brand, .topbar .user-name, .theme-switch, .language-switch')]
            .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
            .map((el) => [el.textContent.trim() || el.className, el.getBoundingClientRect()]);
          const found = [];
          for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
              const [a, p] = boxes[i], [b, q] = boxes[j];
              const apart = p.right - 0.5 <= q.left || q.right - 0.5 <= p.left || p.bottom - 0.5 <= q.top || q.bottom - 0.5 <= p.top;
              if (!apart) {
                found.push(`${a} / ${b}`);
              }
            }
          }
          return found;
        }"""
    )


@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
def test_every_page_fits_a_360_pixel_phone(browser, app_url, language):
    context, page = phone(browser, language)
    try:
        wide = {}
        for path in ("/accounts/login/", "/accounts/signup/"):
            page.goto(app_url + path)
            settled(page)
            wide[path] = too_wide(page) + overlapping(page)
        sign_up(page, app_url, f"phone-{language}".lower())  # the first account: an administrator's full bar
        settled(page)
        wide["chat, empty"] = too_wide(page) + overlapping(page)
        page.fill("#message-input", "Show me some code")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-role=assistant][data-status=complete]", timeout=30_000)
        wide["chat with an answer"] = too_wide(page)
        for path in ("/usage/", "/keys/"):
            page.goto(app_url + path)
            settled(page)
            wide[path] = too_wide(page) + overlapping(page)
    finally:
        context.close()
    assert {where: found for where, found in wide.items() if found} == {}


def test_the_conversation_list_is_a_drawer_that_takes_and_gives_back_the_focus(browser, app_url):
    context, page = phone(browser)
    try:
        sign_up(page, app_url, "drawer")
        conversation_had(page)
        page.reload()
        settled(page)
        toggle = page.locator("#sidebar-toggle")
        sidebar = page.locator("#sidebar")
        # Closed: off the screen, and out of reach of Tab and of screen readers.
        assert toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false"
        assert not sidebar.is_visible()
        page.locator("#message-input").focus()
        for _ in range(25):
            page.keyboard.press("Shift+Tab")
            assert not page.evaluate("() => document.getElementById('sidebar').contains(document.activeElement)")

        toggle.tap()
        page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
        assert sidebar.is_visible() and toggle.get_attribute("aria-expanded") == "true"
        box = sidebar.bounding_box()
        assert box["x"] == 0 and box["width"] <= PHONE["width"] * 0.85 + 1
        # The focus is in the drawer, on the open conversation.
        assert page.evaluate("() => document.activeElement.getAttribute('aria-current')") == "page"
        page.keyboard.press("Escape")
        page.wait_for_function("() => getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'")
        assert page.evaluate("() => document.activeElement.id") == "sidebar-toggle"

        # A tap beside the drawer closes it too.
        toggle.tap()
        page.wait_for_selector("#sidebar-backdrop:not([hidden])")
        page.mouse.click(PHONE["width"] - 20, PHONE["height"] // 2)
        page.wait_for_function("() => getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'")
        assert toggle.get_attribute("aria-expanded") == "false"
    finally:
        context.close()


def test_the_message_box_stays_above_the_on_screen_keyboard(browser, app_url):
    context, page = phone(browser)
    try:
        sign_up(page, app_url, "keyboard")
        viewport = page.evaluate("() => document.querySelector('meta[name=viewport]').content")
        assert "interactive-widget=resizes-content" in viewport
        page.locator("#message-input").tap()
        # What resizes-content does when the keyboard opens: the page gets the height left
        # above it (Chromium on Android; 740 - a 320-pixel keyboard).
        page.set_viewport_size({"width": 360, "height": 420})
        page.wait_for_function("() => window.innerHeight === 420")
        composer = page.locator("#composer").bounding_box()
        send = page.locator("#send-button").bounding_box()
        assert composer["y"] + composer["height"] <= 420 and send["y"] + send["height"] <= 420
        assert page.locator("#message-input").is_visible()
        assert page.evaluate("() => document.activeElement.id") == "message-input"
        assert page.evaluate("() => document.documentElement.scrollHeight") <= 420
    finally:
        context.close()


# The README's pictures of the page: each language, each theme, a phone and a desktop, in
# four pictures (each pair of the three shown at least once).
PICTURES = [
    ("desktop-en-light.png", "en-US", "light", False),
    ("desktop-zh-dark.png", "zh-CN", "dark", False),
    ("phone-zh-light.png", "zh-CN", "light", True),
    ("phone-en-dark.png", "en-US", "dark", True),
]


@pytest.mark.parametrize(("name", "language", "theme", "on_phone"), PICTURES, ids=[p[0][:-4] for p in PICTURES])
def test_the_chat_in_each_language_theme_and_size(browser, app_url, name, language, theme, on_phone):
    """The chat page after a first answer speaks the browser's language in its theme, at the
    size; with YIWEB_SCREENSHOTS the README's picture is taken (tests/readme_pictures.py)."""
    size = PHONE if on_phone else {"width": 1280, "height": 800}
    context = browser.new_context(viewport=size, device_scale_factor=2 if on_phone else 1, is_mobile=on_phone,
                                  has_touch=on_phone, locale=language, color_scheme=theme, reduced_motion="reduce")
    page = context.new_page()
    try:
        sign_up(page, app_url, name[:-4])
        question = "用 Python 写一个问候函数" if language == "zh-CN" else "Write a greeting function in Python"
        page.fill("#message-input", question)
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-role=assistant][data-status=complete]", timeout=30_000)
        page.locator("#message-input").blur()
        if on_phone and language == "zh-CN":
            page.locator("#sidebar-toggle").tap()  # the drawer, open
            page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
            page.evaluate("() => document.activeElement.blur()")
        settled(page)
        chinese = language == "zh-CN"
        assert page.evaluate("() => document.documentElement.lang") == ("zh-hans" if chinese else "en")
        assert page.locator("#send-button .btn-label").inner_text() == ("发送" if chinese else "Send")
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(33, 33, 33)" if theme == "dark" else "rgb(255, 255, 255)")
        readme_picture(page, name)
    finally:
        context.close()


def test_the_language_is_picked_from_the_top_bar_and_kept(browser, app_url):
    """On a phone the language menu is an icon over its select: picking 简体中文 brings the
    same page back in Chinese at once, and the choice outlives the browser's English."""
    context, page = phone(browser, "en-US")
    try:
        sign_up(page, app_url, "polyglot")
        conversation_had(page)
        conversation = page.url
        assert page.locator("#language-select").is_visible()  # laid over the icon, unseen but there
        assert page.locator("label[for=language-select]").inner_text() == "Language"
        with page.expect_navigation():
            page.select_option("#language-select", "zh-hans")
        assert page.url == conversation
        assert page.evaluate("() => document.documentElement.lang") == "zh-hans"
        assert page.get_attribute("#message-input", "placeholder") == "给 Yi 发消息…"
        page.goto(app_url + "/usage/")
        assert page.locator("h1").inner_text() == "最近 30 天的用量"
    finally:
        context.close()
