"""Issue 14 in Debian's Chromium: finding an old conversation by a Chinese word, opening it
at that message, editing an earlier question, stepping between its versions, exporting,
deleting and importing it back; and the list: renamed and pinned in one tab, seen in
another; loaded a page at a time as it scrolls, under date headings.

Black box, as tests/test_browser.py: yiweb runs as a real Daphne process against the
simulator over HTTP. The old conversations are written into the app's database here,
through its own models (`manage.py shell`), with the dates they would have had.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import contextlib

import pytest

from tests.live_server import manage, running_app_and_simulator
from tests.readme_pictures import readme_picture, readme_pictures_untouched  # noqa: F401 (an autouse fixture)
from tests.test_browser import CHROMIUM, browser, page, sign_up  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, its environment, path of its SQLite file)."""
    with running_app_and_simulator(delta_ms=5, media_root=str(tmp_path_factory.mktemp("media"))) as running:
        yield running


# Writes conversations for a user as they would have been written over time: each a chain
# of questions and answers, dated `days_ago`, optionally pinned or naming an image.
SEED = """
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chat.catalog import tokens_cost
from chat.models import Attachment, Conversation, Message

user = get_user_model().objects.get(username={username!r})
for spec in json.loads({specs!r}):
    when = timezone.now() - timedelta(days=spec["days_ago"], minutes=spec.get("minutes", 0))
    conversation = Conversation.objects.create(user=user, title=spec["title"], model="yi-large")
    parent = None
    for question, answer in spec["turns"]:
        parent = Message.objects.create(conversation=conversation, role="user", content=question, parent=parent)
        if spec.get("images") and parent.parent_id is None:
            Attachment.objects.create(user=user, message=parent, file="attachments/none.png", media_type="image/png",
                                      width=8, height=8, size_bytes=100)
        parent = Message.objects.create(
            conversation=conversation, role="assistant", content=answer, parent=parent, model="yi-large",
            status="complete", finish_reason="stop", prompt_tokens=120, completion_tokens=480, total_tokens=600,
            cost_usd=tokens_cost("yi-large", 120, 480), ttft_ms=230, duration_ms=4100)
    Message.objects.filter(conversation=conversation).update(created_at=when)
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=when, updated_at=when, leaf=parent, pinned=spec.get("pinned", False))
"""


def seed(env: dict, username: str, specs: list[dict]) -> None:
    manage("shell", "-c", SEED.format(username=username, specs=json.dumps(specs)), env=env)


def rows(database: str, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute(sql, args).fetchall()


def sidebar_titles(page) -> list[str]:
    return page.locator("#conversations-active .conversation-title").all_inner_texts()


def group_headings(page) -> list[str]:
    return page.locator("#conversations-active .conversation-group-heading").all_inner_texts()


def wait_answers_complete(page, count: int) -> None:
    page.wait_for_function(
        "n => { const a = [...document.querySelectorAll('[data-role=assistant]')];"
        " return a.length === n && a.every(m => m.dataset.status === 'complete'); }", arg=count, timeout=30_000)


def row(page, title: str):
    return page.locator("#conversations-active .conversation-item", has_text=title)


def open_row_menu(page, title: str) -> None:
    target = row(page, title)
    target.hover()
    target.locator(".conversation-more").click()
    page.locator("#popup-menu").wait_for(state="visible")


def menu_item(page, name: str):
    return page.locator("#popup-menu").get_by_role("menuitem", name=name)


# --- Find, reread, branch, export, delete, import ----------------------------------------

WORD = "蝾螈"
# A long Chinese answer with the word in its middle, and markup that must show as text.
MIDDLE_ANSWER = (
    "我们在云南的第三天去了山里的溪流。" * 12
    + f"在石头下面发现了一只{WORD}，它的皮肤是黑色的，带着橙色的斑点，导游说它叫<b>东方{WORD}</b>。"
    + "回到客栈以后，大家一起吃了米线，然后早早休息。" * 12
)


def travel_turns() -> list[list[str]]:
    turns = [[f"第{i}天我们去哪里？", f"第{i}天的安排：早上出发，下午参观古城，晚上看星星。" * 6] for i in range(1, 13)]
    turns[3][1] = MIDDLE_ANSWER
    return turns


def test_an_old_answer_found_by_a_chinese_word_is_reread_branched_exported_deleted_and_imported(page, app):
    base, env, database = app
    sign_up(page, base, "lin")
    seed(env, "lin", [
        {"title": "云南旅行", "days_ago": 45, "turns": travel_turns()},
        {"title": "北京的天气", "days_ago": 60, "turns": [["明天北京天气怎么样？", "明天晴，气温五到十五度。"]]},
        {"title": "Python errors", "days_ago": 3, "turns": [["What is a ValueError?", "An exception raised when…"]]},
    ])
    [(conversation_id,)] = rows(database, "SELECT id FROM chat_conversation WHERE title = ?", "云南旅行")
    [(answer_id,)] = rows(database, "SELECT id FROM chat_message WHERE content LIKE ?", f"%东方{WORD}%")
    page.goto(f"{base}/")

    # Found by a word in the middle of the answer, from the search box Ctrl+K reaches.
    page.keyboard.press("Control+k")
    assert page.evaluate("document.activeElement.id") == "search-input"
    page.keyboard.type(WORD)
    result = page.locator("#search-results .search-result")
    result.first.wait_for()
    assert result.count() == 1
    assert result.locator(".search-result-title").inner_text() == "云南旅行"
    assert result.locator("mark").all_inner_texts() == [WORD, WORD]
    snippet = result.locator(".search-result-snippet").inner_text()
    assert "<b>东方" in snippet  # the answer's markup is shown as the text it is
    assert result.locator(".search-result-snippet b").count() == 0
    assert page.locator("#conversations-active").is_hidden()  # results stand in for the list

    # Opened at that message: it is on screen, far from the end, with the word marked.
    result.locator("a").click()
    page.wait_for_url(f"{base}/c/{conversation_id}/#m{answer_id}")
    answer = page.locator(f'[data-message-id="{answer_id}"]')
    answer.wait_for()
    page.wait_for_function("() => CSS.highlights.get('search-match')?.size === 2")
    page.wait_for_timeout(300)  # the answers above it are rendered by now, and it is still in view
    box = answer.bounding_box()
    scroller = page.locator("#message-scroller").bounding_box()
    assert scroller["y"] <= box["y"] + box["height"] / 2 <= scroller["y"] + scroller["height"]
    assert page.evaluate("(() => { const s = document.querySelector('#message-scroller');"
                         " return s.scrollHeight - s.scrollTop - s.clientHeight; })()") > 1000

    # Reread: the conversation's model and system prompt; the answer's facts.
    assert page.locator("#conversation-facts summary").inner_text() == "yi-large · no system prompt"
    answer.locator(".message-meta").click()
    facts = dict(zip(answer.locator(".facts-list dt").all_inner_texts(), answer.locator(".facts-list dd").all_inner_texts()))
    assert facts["Model"] == "yi-large"
    assert facts["Tokens"] == "120 in, 480 out"
    assert facts["First token after"] == "0.23 s"
    assert facts["Duration"] == "4.1 s"
    assert facts["Parameters"] == "the model's defaults"
    assert facts["Ended"] == "Complete."
    assert facts["Cost"].startswith("$")

    # Edit an earlier question: what followed it goes, a new answer comes.
    question = page.locator('[data-role="user"]').nth(2)
    question.hover()
    question.get_by_role("button", name="Edit").click()
    editor = question.locator(".question-editor-input")
    assert editor.input_value() == "第3天我们去哪里？"
    editor.fill("第3天改去大理，怎么安排？")
    question.get_by_role("button", name="Save & send").click()
    wait_answers_complete(page, 3)
    assert page.locator("#message-list .message").count() == 6
    edited = page.locator('[data-role="user"]').nth(2)
    assert edited.locator(".message-body").inner_text() == "第3天改去大理，怎么安排？"
    assert edited.locator(".version-position").inner_text() == "2 / 2"
    assert "第3天改去大理" in page.locator('[data-role="assistant"]').last.inner_text()

    # Back to the first version: the whole old thread, the found answer with it.
    edited.get_by_role("button", name="Previous version").click()
    page.wait_for_function("() => document.querySelectorAll('#message-list .message').length === 24")
    first = page.locator('[data-role="user"]').nth(2)
    assert first.locator(".message-body").inner_text() == "第3天我们去哪里？"
    assert first.locator(".version-position").inner_text() == "1 / 2"
    assert page.locator(f'[data-message-id="{answer_id}"]').count() == 1

    # The README's picture: the search beside the found answer, its facts open. Esc then
    # gives the list back.
    page.keyboard.press("Control+k")
    page.keyboard.type(WORD)
    result.first.wait_for()
    readme_picture(page, "history.png")
    page.keyboard.press("Escape")
    assert page.locator("#search-input").input_value() == ""
    page.locator("#conversations-active").wait_for()

    # Export it: our JSON, with both versions of the question.
    open_row_menu(page, "云南旅行")
    with page.expect_download() as download:
        menu_item(page, "Export as JSON (to import back)").click()
    exported = download.value
    assert exported.suggested_filename == f"yiweb-{conversation_id}.json"
    data = json.loads(open(exported.path(), encoding="utf-8").read())
    assert data["format"] == "yiweb-export"
    [conversation] = data["conversations"]
    questions = [m["content"] for m in conversation["messages"] if m["role"] == "user"]
    assert "第3天我们去哪里？" in questions and "第3天改去大理，怎么安排？" in questions

    # Delete it, after saying what goes: the page leaves it and says so.
    open_row_menu(page, "云南旅行")
    menu_item(page, "Delete…").click()
    dialog = page.locator("#delete-dialog")
    dialog.wait_for(state="visible")
    assert "“云南旅行” will be deleted, with all its messages and the images in it." in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{base}/")
    assert page.locator("#send-error-text").inner_text() == "“云南旅行” was deleted."
    assert "云南旅行" not in sidebar_titles(page)
    assert rows(database, "SELECT count(*) FROM chat_conversation WHERE id = ?", conversation_id) == [(0,)]

    # Import the export: it opens, with its two versions.
    page.set_input_files("#import-input", exported.path())
    page.wait_for_url(re.compile(rf"{base}/c/(\d+)/$"))
    assert page.title() == "云南旅行 · yiweb"
    assert page.locator("#message-list .message").count() == 24
    question = page.locator('[data-role="user"]').nth(2)
    assert question.locator(".version-position").inner_text() == "1 / 2"
    question.get_by_role("button", name="Next version").click()
    page.wait_for_function("() => document.querySelectorAll('#message-list .message').length === 6")
    assert page.locator('[data-role="user"]').nth(2).locator(".message-body").inner_text() == "第3天改去大理，怎么安排？"
    assert page.problems == []


def test_an_import_that_is_not_ours_says_why_and_opens_nothing(page, app, tmp_path):
    base, _, _ = app
    sign_up(page, base, "kai")
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"conversations": []}), encoding="utf-8")
    page.set_input_files("#import-input", str(bad))
    notice = page.locator("#sidebar-notice")
    notice.wait_for(state="visible")
    assert notice.inner_text().strip() != ""
    assert page.url == f"{base}/"
    page.problems.clear()  # the refusal is a 400, as it should be


# --- The list ------------------------------------------------------------------------------


def test_a_rename_inline_and_a_pin_reach_another_tab(page, app):
    base, env, _ = app
    sign_up(page, base, "ming")
    seed(env, "ming", [
        {"title": "Alpha", "days_ago": 0, "turns": [["a?", "a."]]},
        {"title": "Beta", "days_ago": 1, "turns": [["b?", "b."]]},
        {"title": "Gamma", "days_ago": 40, "turns": [["c?", "c."]]},
    ])
    page.goto(f"{base}/")
    other = page.context.new_page()
    other.goto(f"{base}/")
    assert group_headings(other)[:2] == ["Today", "Yesterday"]

    # Rename inline, by keyboard: an empty title is refused with the server's sentence.
    row(page, "Beta").locator(".conversation-more").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.textContent") == "Rename"
    page.keyboard.press("Enter")
    box = row(page, "Beta").locator(".conversation-rename")
    assert box.input_value() == "Beta"
    box.fill("  ")
    box.press("Enter")
    error = page.locator(".conversation-rename-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Type a title, or press Esc to keep the old one."
    box.fill("Beta, renamed")
    box.press("Enter")
    page.locator(".conversation-rename").wait_for(state="detached")
    assert "Beta, renamed" in sidebar_titles(page)
    other.wait_for_function(
        "() => [...document.querySelectorAll('#conversations-active .conversation-title')]"
        ".some(t => t.textContent === 'Beta, renamed')")

    # Esc gives up a rename.
    open_row_menu(page, "Alpha")
    menu_item(page, "Rename").click()
    row(page, "Alpha").locator(".conversation-rename").fill("Not this")
    page.keyboard.press("Escape")
    assert page.locator(".conversation-rename").count() == 0
    assert "Alpha" in sidebar_titles(page)

    # Pinned here, it is on top under "Pinned" there, without a reload.
    open_row_menu(page, "Gamma")
    menu_item(page, "Pin").click()
    other.wait_for_function(
        "() => document.querySelector('#conversations-active .conversation-group-heading')?.textContent === 'Pinned'")
    assert sidebar_titles(other)[0] == "Gamma"
    assert row(other, "Gamma").get_by_role("img", name="Pinned").is_visible()
    assert group_headings(other)[:3] == ["Pinned", "Today", "Yesterday"]
    assert page.problems == []


def test_the_list_loads_its_next_page_as_it_scrolls_under_date_headings(page, app):
    base, env, _ = app
    sign_up(page, base, "nora")
    days = [0, 0, 1, 3, 6, 12, 25] + [35 + 9 * i for i in range(56)]  # 63 conversations, a year and a half
    seed(env, "nora", [
        {"title": f"Chat {i:02d}", "days_ago": day, "minutes": i, "images": i == 2, "turns": [[f"q{i}", f"a{i}"]]}
        for i, day in enumerate(days)
    ])
    page.goto(f"{base}/")
    assert len(sidebar_titles(page)) == 50
    assert group_headings(page)[:4] == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days"]
    assert row(page, "Chat 02").get_by_role("img", name="Has images").is_visible()
    assert row(page, "Chat 03").get_by_role("img", name="Has images").is_hidden()

    page.locator("#sidebar-scroll").evaluate("s => { s.scrollTop = s.scrollHeight; }")
    page.wait_for_function("() => document.querySelectorAll('#conversations-active .conversation-item').length === 63")
    assert sidebar_titles(page) == [f"Chat {i:02d}" for i in range(63)]
    months = group_headings(page)[4:]
    assert len(months) == len(set(months)) >= 12
    assert all(re.fullmatch(r"[A-Z][a-z]+ \d{4}", month) for month in months)
    assert page.problems == []


def test_several_selected_are_archived_shown_apart_and_deleted_together(page, app):
    base, env, database = app
    sign_up(page, base, "oscar")
    seed(env, "oscar", [{"title": f"Old {i}", "days_ago": i, "turns": [["q", "a"]]} for i in range(4)])
    page.goto(f"{base}/")
    page.get_by_role("button", name="Select").click()
    row(page, "Old 1").locator(".conversation-link").click()
    row(page, "Old 2").locator(".conversation-check").check()
    assert page.locator("#selection-count").inner_text() == "2 selected"
    page.get_by_role("button", name="Archive", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#conversations-active .conversation-item').length === 2")
    assert sidebar_titles(page) == ["Old 0", "Old 3"]

    page.get_by_role("button", name="Archived").click()
    archived = page.locator("#conversations-archived .conversation-title")
    archived.first.wait_for()
    assert archived.all_inner_texts() == ["Old 1", "Old 2"]
    page.get_by_role("button", name="Select").click()
    page.get_by_role("button", name="All", exact=True).click()
    page.get_by_role("button", name="Delete…").click()
    dialog = page.locator("#delete-dialog")
    assert "2 conversations will be deleted" in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_function("() => !document.querySelector('#conversations-archived .conversation-item')")
    assert page.locator("#conversations-archived .conversation-empty").inner_text() == "No archived conversations."
    assert sorted(t for (t,) in rows(database, "SELECT title FROM chat_conversation c JOIN auth_user u"
                                               " ON u.id = c.user_id WHERE u.username = 'oscar'")) == ["Old 0", "Old 3"]
    assert page.problems == []


def test_the_usage_page_fits_a_phone(page, app):
    """On a 390-pixel screen the per-model table scrolls inside itself and the top bar keeps
    Sign out whole (the page was 413 pixels wide, and the button wrapped)."""
    base, env, _ = app
    sign_up(page, base, "petra")
    seed(env, "petra", [{"title": "Usage", "days_ago": 0, "turns": [["q", "a"]]}])
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{base}/usage/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    sign_out = page.get_by_role("button", name="Sign out")
    assert sign_out.bounding_box()["height"] <= 40  # one line


# --- A tool's result found ---------------------------------------------------------------

# A conversation where percentage_change was called early on (the reference's revenue
# question), then talked on for a while: the call's card is far above the end.
SEED_TOOL_RUN = """
import json
from chat.models import Conversation, Message

user = get_user_model().objects.get(username={username!r})
conversation = Conversation.objects.create(user=user, title="Revenue, April 2024", model="yi-large-fc")
question = Message.objects.create(conversation=conversation, role="user", content="How did revenue change from April 2023 to April 2024?")
call = {{"id": "call_yoy", "type": "function",
        "function": {{"name": "percentage_change", "arguments": json.dumps({{"now": 29.12, "before": 20.96}})}}}}
caller = Message.objects.create(conversation=conversation, role="assistant", parent=question, model="yi-large-fc",
                                tool_calls=[call], finish_reason="tool_calls", status="complete")
tool = Message.objects.create(conversation=conversation, role="tool", parent=caller, name="percentage_change",
                              tool_call_id="call_yoy", content={result!r}, status="complete", duration_ms=3)
parent = Message.objects.create(conversation=conversation, role="assistant", parent=tool, model="yi-large-fc",
                                content="Year over year, revenue grew by 38.93%.", status="complete")
for i in range(12):
    parent = Message.objects.create(conversation=conversation, role="user", parent=parent, content=f"And then {{i}}?")
    parent = Message.objects.create(conversation=conversation, role="assistant", parent=parent, status="complete",
                                    content="Some more words about revenue. " * 40)
Conversation.objects.filter(pk=conversation.pk).update(leaf=parent)
"""
YOY_RESULT = '{"time": "2024-04", "type": "YoY", "change": "38.93%"}'


def test_a_tool_result_found_by_search_opens_at_its_card(page, app):
    base, env, database = app
    sign_up(page, base, "rui")
    script = "from django.contrib.auth import get_user_model\n" + SEED_TOOL_RUN.format(username="rui", result=YOY_RESULT)
    manage("shell", "-c", script, env=env)
    [(conversation_id, tool_id)] = rows(database, "SELECT conversation_id, id FROM chat_message WHERE role = 'tool'")
    page.goto(f"{base}/")

    page.fill("#search-input", "YoY")
    result = page.locator("#search-results .search-result")
    result.first.wait_for()
    assert result.count() == 1
    assert result.locator(".search-result-role").inner_text().strip() == "percentage_change result:"
    assert result.locator("mark").all_inner_texts() == ["YoY"]

    # Opened at the card of that call, inside the answer that made it, open, the word marked.
    result.locator("a").click()
    page.wait_for_url(f"{base}/c/{conversation_id}/#m{tool_id}")
    card = page.locator('.message-assistant .tool-card[data-tool-call-id="call_yoy"]')
    card.wait_for()
    page.wait_for_function("() => document.querySelector('.tool-card').open")
    # In the card's line (its result in one line) and in the result itself.
    page.wait_for_function("() => CSS.highlights.get('search-match')?.size === 2")
    page.wait_for_timeout(300)
    box = card.locator(".tool-card-result").bounding_box()
    scroller = page.locator("#message-scroller").bounding_box()
    assert scroller["y"] <= box["y"] + box["height"] / 2 <= scroller["y"] + scroller["height"]
    assert page.evaluate("(() => { const s = document.querySelector('#message-scroller');"
                         " return s.scrollHeight - s.scrollTop - s.clientHeight; })()") > 1000
    assert "38.93%" in card.locator(".tool-card-result").inner_text()
    assert '"before": 20.96' in card.locator(".tool-card-arguments").inner_text()
