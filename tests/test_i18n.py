"""English and Simplified Chinese through Django's i18n: the language is the browser's
(Accept-Language) until one is picked in the page, which is kept; templates, forms and the
JavaScript catalog speak it; the model's answers stay as they were written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

LOCALE = Path(settings.BASE_DIR) / "locale"


def html_lang(page: str) -> str:
    return re.search(r'<html lang="([\w-]+)"', page).group(1)


def test_the_sign_in_page_speaks_the_browsers_chinese(client):
    page = client.get(reverse("login"), headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}).content.decode()
    assert html_lang(page) == "zh-hans"
    assert "<h1 id=\"auth-title\">登录</h1>" in page and "还没有账号？" in page
    assert "用户名" in page  # Django's own form labels come in Chinese too


def test_english_is_the_default_and_the_browsers_english_is_honoured(client):
    for accept in ({}, {"accept-language": "en-GB,en;q=0.9"}, {"accept-language": "fr-FR"}):
        page = client.get(reverse("login"), headers=accept).content.decode()
        assert html_lang(page) == "en" and "<h1 id=\"auth-title\">Sign in</h1>" in page


def test_a_language_picked_in_the_page_is_kept_for_a_year_over_the_browsers(client):
    menu = client.get(reverse("login"), headers={"accept-language": "en"}).content.decode()
    assert 'action="/i18n/setlang/"' in menu and '<option value="zh-hans" lang="zh-hans">简体中文</option>' in menu
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": reverse("login")},
                           headers={"accept-language": "en"})
    assert response.status_code == 302 and response.url == reverse("login")
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "zh-hans" and cookie["max-age"] == 365 * 24 * 3600
    page = client.get(reverse("login"), headers={"accept-language": "en"}).content.decode()
    assert html_lang(page) == "zh-hans" and "<h1 id=\"auth-title\">登录</h1>" in page
    client.post(reverse("set_language"), {"language": "en", "next": reverse("login")})
    page = client.get(reverse("login"), headers={"accept-language": "zh"}).content.decode()
    assert "<h1 id=\"auth-title\">Sign in</h1>" in page


def test_form_errors_come_in_the_pages_language(client, settings):
    page = client.post(reverse("login"), {"username": "nobody", "password": "wrong"},
                       headers={"accept-language": "zh-hans"}).content.decode()
    assert "请输入一个正确的" in page  # Django's "Please enter a correct username and password"
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 1
    page = client.post(reverse("login"), {"username": "nobody", "password": "wrong"},
                       headers={"accept-language": "zh-hans"}).content.decode()
    assert "这个账号的登录失败次数过多。请 15 分钟后再试；本次没有校验密码。" in page


def test_the_chat_page_speaks_chinese_but_leaves_the_answers_as_written(client, user):
    client.force_login(user)
    conversation = Conversation.objects.create(user=user, title="Travel plans")
    question = Message.objects.create(conversation=conversation, role="user", content="Where should I go?")
    Message.objects.create(conversation=conversation, role="assistant", content="Try Kyoto. New chat, Send, Stop.",
                           model="yi-large", parent=question)
    page = client.get(reverse("chat:conversation", args=[conversation.id]),
                      headers={"accept-language": "zh-CN"}).content.decode()
    assert html_lang(page) == "zh-hans"
    assert "新对话" in page and 'placeholder="给 Yi 发消息…"' in page and ">密钥</a>" in page
    messages = json.loads(re.search(r'<script id="messages-data" type="application/json">(.*?)</script>',
                                    page, re.DOTALL).group(1))
    assert [m["content"] for m in messages] == ["Where should I go?", "Try Kyoto. New chat, Send, Stop."]
    assert "Travel plans" in page  # a title is the person's (or the model's) words, not the page's


def test_the_keys_and_usage_pages_speak_chinese(client, user):
    client.force_login(user)
    keys = client.get(reverse("chat:keys"), headers={"accept-language": "zh-CN"}).content.decode()
    assert "<h1>API 密钥</h1>" in keys and "验证并保存" in keys and "加密保存；本页只显示它的最后四个字符。" in keys
    assert ">看图模型</label>" in keys and "Yi API 可以留空：由 yi-vision 回答。" in keys
    refused = client.post(reverse("chat:keys"), {"label": "", "key": "", "base_url": "ftp://x", "tier": "free",
                                                 "images_model": "llava 13b"},
                          headers={"accept-language": "zh-CN"}).content.decode()
    assert "给密钥起个名称，例如“工作”或“个人”。" in refused and "请粘贴 API 密钥。" in refused
    assert "模型名称里没有空格或换行。请照服务商列出的名称输入，例如 llava 或 qwen2-vl。" in refused
    assert "Base URL 必须以 https://（或 http://）开头，例如 https://api.01.ai/v1。" in refused
    usage = client.get(reverse("chat:usage"), headers={"accept-language": "zh-CN"}).content.decode()
    assert "<h1>最近 30 天的用量</h1>" in usage and "0 个回答共 0 个 token（输入 0，输出 0）；" in usage


def test_the_keys_page_in_chinese_names_the_usage_tiers_and_the_servers_key_button_in_chinese(client, user, settings):
    """Found on the README walk: the tier names (model choices) and the default key's
    button were left in English on the Chinese Keys page."""
    from chat.crypto import secret_encrypt
    from chat.models import ApiKey

    settings.SERVER_KEY_FOR_ALL = True
    key = ApiKey.objects.create(user=user, label="Work", base_url="https://api.01.ai/v1", is_default=True,
                                key_encrypted=secret_encrypt("sk-work-0123456789"), key_last4="6789")
    client.force_login(user)
    page = client.get(reverse("chat:keys"), headers={"accept-language": "zh-CN"}).content.decode()
    assert '<button type="submit" class="btn btn-small">默认使用服务器的密钥</button>' in page
    tiers = ["免费", "等级 1", "等级 2", "等级 3", "等级 4", "等级 5", "不限速（自行部署）"]
    listed = re.search(rf'<select id="tier-{key.pk}" name="tier">(.*?)</select>', page, re.DOTALL).group(1)
    assert re.findall(r">([^<]+)</option>", listed) == tiers
    added = re.search(r'<select name="tier"[^>]*>(.*?)</select>', page, re.DOTALL).group(1)  # the add form's
    assert re.findall(r">([^<]+)</option>", added) == tiers
    response = client.post(reverse("chat:key_tier", args=[key.pk]), {"tier": "3"},
                           headers={"accept-language": "zh-CN"}, follow=True)
    assert "“Work”现在按 等级 3 的限额发送请求。" in response.content.decode()
    english = client.get(reverse("chat:keys"), headers={"accept-language": "en"}).content.decode()
    assert "Use the server's key by default</button>" in english and " selected>Tier 3</option>" in english


def test_the_javascript_catalog_is_a_same_origin_script_with_the_pages_strings(client):
    page = client.get(reverse("login"), headers={"accept-language": "zh-CN"}).content.decode()
    assert '<script src="/i18n/jsi18n/" defer></script>' in page  # no inline script: the CSP allows it
    catalog = client.get("/i18n/jsi18n/", headers={"accept-language": "zh-CN"})
    assert catalog.status_code == 200 and catalog["Content-Type"].startswith("text/javascript")
    assert "Content-Security-Policy" in catalog and "script-src 'self'" in catalog["Content-Security-Policy"]
    body = catalog.content.decode()
    chinese = json.dumps("正在等待上传完成…")  # the catalog is JSON, its Chinese \u-escaped
    assert "globals.gettext = django.gettext" in body and chinese in body
    english = client.get("/i18n/jsi18n/", headers={"accept-language": "en"}).content.decode()
    assert chinese not in english


@pytest.mark.parametrize("po_path", sorted(LOCALE.glob("*/LC_MESSAGES/*.po")),
                         ids=lambda p: p.parent.parent.name + "/" + p.name)
def test_the_committed_mo_files_are_compiled_from_the_po_files(po_path):
    """The app reads the .mo files, which are committed so that the first run needs no
    gettext tools: each must hold exactly its .po's translations (msgfmt after an edit)."""
    po = polib.pofile(str(po_path))
    mo = polib.mofile(str(po_path.with_suffix(".mo")))
    wanted = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in po.translated_entries()}
    compiled = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in mo if e.msgid}
    assert compiled == wanted, "run: msgfmt -o {} {}".format(po_path.with_suffix(".mo").name, po_path.name)
    assert not po.untranslated_entries() and not po.fuzzy_entries()


async def socket_for(user, headers: list[tuple[bytes, bytes]]):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from tests.conftest import session_cookie
    from yiweb.asgi import application

    cookie = await database_sync_to_async(session_cookie)(user)
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"origin", b"http://localhost"), (b"host", b"localhost"),
        (b"cookie", f"sessionid={cookie}".encode() + b"".join(v for k, v in headers if k == b"cookie")),
        *[(k, v) for k, v in headers if k != b"cookie"],
    ])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("headers", "empty", "too_long"), [
    ([], "Type a message before sending.",
     "That message is too long (100,001 characters; the limit is 100,000). Shorten it or split it."),
    ([(b"accept-language", b"zh-CN,zh;q=0.9")], "请先输入消息再发送。",
     "消息太长（100,001 个字符，上限为 100,000）。请缩短或拆分后再发。"),
    ([(b"accept-language", b"zh-CN"), (b"cookie", b"; django_language=en")], "Type a message before sending.",
     "That message is too long (100,001 characters; the limit is 100,000). Shorten it or split it."),
    ([(b"cookie", b"; django_language=zh-hans")], "请先输入消息再发送。",
     "消息太长（100,001 个字符，上限为 100,000）。请缩短或拆分后再发。"),
], ids=["english", "browser-chinese", "picked-english", "picked-chinese"])
async def test_a_refused_send_is_said_in_the_pages_language(user, settings, headers, empty, too_long):
    settings.MESSAGE_MAX_CHARS = 100_000
    ws = await socket_for(user, headers)
    try:
        for text, code, sentence in (("  ", "empty_message", empty), ("x" * 100_001, "message_too_long", too_long)):
            await ws.send_json_to({"type": "send", "conversation_id": None, "text": text, "model": "yi-large"})
            frame = await ws.receive_json_from(timeout=5)
            assert (frame["type"], frame["code"], frame["message"]) == ("error", code, sentence)
        await ws.send_to(text_data="not json")
        frame = await ws.receive_json_from(timeout=5)
        assert frame["message"] == ("页面发来了服务器无法理解的内容。请刷新页面。" if "请" in empty
                                    else "The page sent something the server did not understand. Reload the page.")
    finally:
        await ws.disconnect()


# --- sentences the server writes: notes, errors, refusals ------------------------------

VISION_NOTE = {"code": "vision_answered", "params": {"model": "yi-large", "vision": "yi-vision"}}
IMAGES_LEFT_OUT = {"code": "images_left_out", "params": {
    "count": 2, "model": "yi-vision", "window": {"code": "window_k", "params": {"k": 16}}}}
ONE_MESSAGE_LEFT_OUT = {"code": "messages_left_out", "params": {
    "count": 1, "model": "llama3", "window": {"code": "window_tokens", "params": {"tokens": "8,000"}}}}


def answered(user, *, notes, **fields) -> Conversation:
    conversation = Conversation.objects.create(user=user, title="Pictures", model="yi-large")
    question = Message.objects.create(conversation=conversation, role="user", content="What is in it?")
    Message.objects.create(conversation=conversation, role="assistant", content="A blue box.", model="yi-vision",
                           parent=question, notes=notes, **fields)
    return conversation


def shown_answer(client, conversation, language: str) -> dict:
    page = client.get(reverse("chat:conversation", args=[conversation.id]),
                      headers={"accept-language": language}).content.decode()
    messages = json.loads(re.search(r'<script id="messages-data" type="application/json">(.*?)</script>',
                                    page, re.DOTALL).group(1))
    return messages[-1]


def test_an_answers_notes_are_said_in_the_language_of_the_page_that_reads_them(client, user):
    from chat.sentences import sentence

    client.force_login(user)
    conversation = answered(user, notes=[VISION_NOTE, IMAGES_LEFT_OUT, ONE_MESSAGE_LEFT_OUT],
                            status="error", error_code="auth", error_message="The Yi API rejected …",
                            error_sentence=sentence("auth", provider=sentence("provider_yi"), status=401,
                                                    key=sentence("key_own", label="Work"),
                                                    advice=sentence("key_advice_own")))
    chinese = shown_answer(client, conversation, "zh-CN")
    assert chinese["notes"] == [
        "yi-large 不能看图，所以由 yi-vision 回答。",
        "前面的 2 张图片没有发送：这段对话超出了 yi-vision 的 16K 上下文窗口。",
        "前面的 1 条消息没有发送：这段对话超出了 llama3 的 8,000 token 上下文窗口。",
    ]
    assert chinese["error_message"] == ("Yi API 拒绝了密钥“Work”（401）：密钥缺失、有误或已停用。"
                                        "请在“密钥”页面检查它，或为这个对话换一个密钥。")
    assert "error_sentence" not in chinese  # the page gets sentences, not their codes
    english = shown_answer(client, conversation, "en")
    assert english["notes"] == [
        "yi-large does not take images, so yi-vision answered.",
        "2 earlier images were not sent: this conversation is over yi-vision's 16K window.",
        "1 earlier message was not sent: this conversation is over llama3's 8,000-token window.",
    ]
    assert english["error_message"] == ("The Yi API rejected the key “Work” (401): it is missing, wrong or disabled. "
                                        "Check it on the Keys page, or pick another key for this conversation.")


def test_an_answer_stored_before_notes_had_codes_still_shows_its_notes_and_error(client, user):
    """Rows the data migration found nothing to do with: text it did not write, and an
    error's English sentence (stored with no code), are shown as they are."""
    client.force_login(user)
    conversation = answered(user, notes=["An older note in words of its own."], status="error",
                            error_code="server_error", error_message="The Yi API had an internal error (500).")
    for language in ("zh-CN", "en"):
        answer = shown_answer(client, conversation, language)
        assert answer["notes"] == ["An older note in words of its own."]
        assert answer["error_message"] == "The Yi API had an internal error (500)."


@pytest.mark.django_db(transaction=True)
def test_migration_0014_gives_the_notes_the_app_wrote_codes_and_back(user):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    old_notes = ["yi-large does not take images, so yi-vision answered.",
                 "2 earlier images were not sent: this conversation is over yi-vision's 16K window.",
                 "1 earlier message was not sent: this conversation is over llama3's 8,000-token window.",
                 "yi-large does not call tools, so none were offered. Pick yi-large-fc to use them.",
                 "Someone else's words."]
    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0013_conversation_server_key")])
    try:
        apps = executor.loader.project_state([("chat", "0013_conversation_server_key")]).apps
        conversation = apps.get_model("chat", "Conversation").objects.create(user_id=user.pk, model="yi-large")
        answer = apps.get_model("chat", "Message").objects.create(
            conversation=conversation, role="assistant", content="A blue box.", notes=old_notes)
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chat"))
    assert Message.objects.get(pk=answer.pk).notes == [
        VISION_NOTE, IMAGES_LEFT_OUT, ONE_MESSAGE_LEFT_OUT,
        {"code": "tools_not_offered", "params": {"model": "yi-large"}}, "Someone else's words."]

    executor.loader.build_graph()
    executor.migrate([("chat", "0013_conversation_server_key")])
    try:
        apps = executor.loader.project_state([("chat", "0013_conversation_server_key")]).apps
        assert apps.get_model("chat", "Message").objects.get(pk=answer.pk).notes == old_notes
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chat"))


def test_the_markdown_export_speaks_the_pages_language_and_the_json_carries_notes_by_code(client, user):
    client.force_login(user)
    conversation = answered(user, notes=[VISION_NOTE], status="stopped")
    markdown = client.get(f"/export/?ids={conversation.pk}&format=md",
                          headers={"accept-language": "zh-CN"}).content.decode()
    assert "## 你\n" in markdown and "*yi-large 不能看图，所以由 yi-vision 回答。*" in markdown
    assert "*(已停止)*" in markdown and "A blue box." in markdown and "What is in it?" in markdown
    english = client.get(f"/export/?ids={conversation.pk}&format=md",
                         headers={"accept-language": "en"}).content.decode()
    assert "## You\n" in english and "*yi-large does not take images, so yi-vision answered.*" in english
    exported = client.get(f"/export/?ids={conversation.pk}", headers={"accept-language": "zh-CN"}).json()
    assert exported["conversations"][0]["messages"][1]["notes"] == [VISION_NOTE]


def test_an_import_refused_is_said_in_the_pages_language(client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(user)
    for language, sentence in (("zh-CN", "这个文件不是 yiweb 的导出文件。"), ("en", "That file is not a yiweb export.")):
        response = client.post("/import/", {"file": SimpleUploadedFile("x.json", b'{"format": "other"}')},
                               headers={"accept-language": language})
        assert (response.status_code, response.json()) == (400, {"code": "bad_import", "message": sentence})
    damaged = {"format": "yiweb-export", "version": 1, "conversations": [
        {"model": "yi-large", "messages": [{"role": "user", "content": "hi"}, {"role": "wizard"}]}]}
    response = client.post("/import/", {"file": SimpleUploadedFile("x.json", json.dumps(damaged).encode())},
                           headers={"accept-language": "zh-CN"})
    assert response.json()["message"] == "第 1 个对话的第 2 条消息的角色不是本应用认识的。"


def test_an_imported_note_by_code_is_kept_and_a_forged_one_is_dropped(client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(user)
    forged = [{"code": "vision_answered", "params": {"model": "Your session expired. Sign in at evil.example",
                                                      "vision": "yi-vision"}},
              {"code": "vision_answered", "params": {"model": "yi-large", "vision": "yi-vision", "extra": "x"}},
              {"code": "say_anything", "params": {}}, {"code": "images_left_out", "params": {
                  "count": 2, "model": "yi-vision", "window": {"code": "window_k", "params": {"k": "16K!"}}}}]
    export = {"format": "yiweb-export", "version": 1, "conversations": [{"model": "yi-large", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "parent": 0, "content": "hello", "notes": [VISION_NOTE, *forged, IMAGES_LEFT_OUT]}]}]}
    response = client.post("/import/", {"file": SimpleUploadedFile("x.json", json.dumps(export).encode())})
    (new_id,) = response.json()["conversation_ids"]
    answer = Message.objects.get(conversation_id=new_id, role="assistant")
    assert answer.notes == [VISION_NOTE, IMAGES_LEFT_OUT]


def test_an_upload_refused_is_said_in_the_pages_language(client, user):
    client.force_login(user)
    response = client.post("/attachments/", b"%PDF-1.4 not a picture", content_type="application/octet-stream",
                           headers={"X-File-Name": "a.pdf", "accept-language": "zh-CN"})
    assert (response.status_code, response.json()) == (400, {
        "code": "not_an_image", "message": "这是 PDF，不是图片。请添加图片（JPEG、PNG、WebP、GIF 或 HEIC）。"})


@pytest.mark.django_db(transaction=True)
async def test_an_answers_note_and_error_are_said_in_each_tabs_language(user, settings, tmp_path):
    """One answer, two tabs: each reads it in its own page's language, though the frames
    that carry it are built once for both."""
    from channels.db import database_sync_to_async

    from chat.attachments import attachment_create, image_prepare_upload
    from tests.test_consumer import frames_until
    from tests.test_image_sends import drawing

    settings.MEDIA_ROOT = tmp_path
    image = await database_sync_to_async(
        lambda: attachment_create(user=user, image=image_prepare_upload(drawing()), original_name="a.png").pk)()
    chinese = await socket_for(user, [(b"cookie", b"; django_language=zh-hans")])
    english = await socket_for(user, [(b"accept-language", b"en-GB")])
    try:
        await chinese.send_json_to({"type": "send", "conversation_id": None, "text": "What is it?",
                                    "model": "yi-large", "attachment_ids": [image]})
        frames = await frames_until(chinese, lambda f: f["type"] == "done")
        conversation_id = next(f["conversation"]["id"] for f in frames if f["type"] == "conversation")
        assert frames[-1]["message"]["notes"] == ["yi-large 不能看图，所以由 yi-vision 回答。"]
        await english.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "after_id": 0})
        frames = await frames_until(english, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
        assert frames[-1]["message"]["notes"] == ["yi-large does not take images, so yi-vision answered."]

        await chinese.send_json_to({"type": "send", "conversation_id": conversation_id, "text": "[sim status=401]",
                                    "model": "yi-vision"})
        said_zh = (await frames_until(chinese, lambda f: f["type"] == "done"))[-1]["message"]
        said_en = (await frames_until(english, lambda f: f["type"] == "done"))[-1]["message"]
        assert (said_zh["error_code"], said_zh["error_message"]) == (
            "auth", "Yi API 拒绝了服务器的 API 密钥（401）：密钥缺失、有误或已停用。"
                    "请在“密钥”页面添加你自己的密钥，或请管理员检查服务器的密钥。")
        assert said_en["error_message"] == (
            "The Yi API rejected the server's API key (401): it is missing, wrong or disabled. "
            "Add a key of your own on the Keys page, or ask the administrator to check the server's key.")

        await chinese.send_json_to({"type": "change_conversations", "conversation_ids": [conversation_id],
                                    "title": "  "})
        frame = await frames_until(chinese, lambda f: f["type"] == "error")
        assert frame[-1]["message"] == "请输入标题，或按 Esc 保留原来的标题。"
    finally:
        await chinese.disconnect()
        await english.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_retrying_answer_says_why_in_each_tabs_language(user):
    from tests.test_consumer import frames_until

    chinese = await socket_for(user, [(b"cookie", b"; django_language=zh-hans")])
    english = await socket_for(user, [(b"accept-language", b"en-GB")])
    try:
        await chinese.send_json_to({"type": "send", "conversation_id": None, "model": "yi-large",
                                    "text": "[sim status=429 times=1 deltas=3 interval=0] 你好"})
        frames = await frames_until(chinese, lambda f: f["type"] == "done")
        assert [f["reason"] for f in frames if f["type"] == "retrying"] == ["Yi API 正在对服务器的 API 密钥限流（429）"]
        conversation_id = next(f["conversation"]["id"] for f in frames if f["type"] == "conversation")
        await english.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "after_id": 0})
        await frames_until(english, lambda f: f["type"] == "subscribed")
        await chinese.send_json_to({"type": "send", "conversation_id": conversation_id, "model": "yi-large",
                                    "text": "[sim status=529 times=1 deltas=3 interval=0] 再来"})
        said_zh = (await frames_until(chinese, lambda f: f["type"] == "retrying"))[-1]["reason"]
        said_en = (await frames_until(english, lambda f: f["type"] == "retrying"))[-1]["reason"]
        assert (said_zh, said_en) == ("Yi API 负载过高（529）", "The Yi API is overloaded (529)")
        await frames_until(chinese, lambda f: f["type"] == "done")
    finally:
        await chinese.disconnect()
        await english.disconnect()


def python_msgids() -> set[tuple[str, str | None]]:
    """Every msgid (and plural) the app's Python code marks for translation."""
    import ast

    marks = {"gettext", "gettext_noop", "_", "gettext_lazy", "pgettext", "pgettext_lazy", "ngettext", "ngettext_lazy"}
    found = set()
    for root in ("chat", "yiweb"):
        for path in sorted((Path(settings.BASE_DIR) / root).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                name = getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else ""
                if name not in marks:
                    continue
                texts = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                         for a in node.args][1 if name.startswith("p") else 0:]
                if name.startswith("n") and texts[:2] and None not in texts[:2]:
                    found.add((texts[0], texts[1]))
                elif not name.startswith("n") and texts and texts[0]:
                    found.add((texts[0], None))
    return found


def test_every_sentence_marked_in_the_python_code_has_a_chinese_translation():
    """A sentence marked for translation but missing from django.po shows in English on a
    Chinese page, and no other test may happen to look at it."""
    po = polib.pofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    translated = {(e.msgid, e.msgid_plural or None) for e in po.translated_entries()}
    marked = python_msgids()
    assert len(marked) > 150  # the walk found the marks (a renamed import would find none)
    assert sorted(marked - translated) == []


def template_msgids() -> set[tuple[str, str | None]]:
    """Every msgid (and plural) the templates mark ({% translate %}, {% blocktranslate %},
    _("…") in a filter), read as makemessages reads them: through Django's templatize."""
    import ast

    from django.utils.translation.template import templatize

    literal = r"""u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    call = re.compile(r"\b(gettext|pgettext|ngettext|npgettext|_)\(\s*((?:" + literal + r"\s*,?\s*)+)")
    found = set()
    for path in sorted((Path(settings.BASE_DIR) / "templates").rglob("*.html")):
        for name, args in call.findall(templatize(path.read_text(), origin=str(path))):
            texts = [ast.literal_eval(text) for text in re.findall(literal, args)][1 if "p" in name else 0:]
            found.add((texts[0], texts[1] if name.startswith("n") else None))
    return found


def test_every_sentence_marked_in_the_templates_has_a_chinese_translation():
    """As for the Python code: the Keys page's "Use the server's key by default" was in
    English on a Chinese page, with no entry in django.po."""
    po = polib.pofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    translated = {(e.msgid, e.msgid_plural or None) for e in po.translated_entries()}
    marked = template_msgids()
    assert len(marked) > 100 and ("Use the server's key by default", None) in marked
    assert sorted(marked - translated) == []


def script_msgids() -> set[tuple[str | None, str, str | None]]:
    """Every (context, msgid, plural) the page's own scripts mark: gettext("…"),
    ngettext("…", "…", n) and pgettext("context", "…"), as makemessages -d djangojs finds
    them (its plain string literals: a JS string's escapes are Python's)."""
    import ast

    literal = r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    call = re.compile(r"\b(gettext|ngettext|pgettext)\(\s*(" + literal + r")(?:\s*,\s*(" + literal + r"))?")
    found = set()
    for path in sorted((Path(settings.BASE_DIR) / "static").rglob("*.js")):
        if "vendor" in path.parts:
            continue
        for name, first, second in call.findall(path.read_text()):
            first, second = ast.literal_eval(first), second and ast.literal_eval(second)
            found.add((first, second, None) if name == "pgettext" else
                      (None, first, second if name == "ngettext" else None))
    return found


def test_every_sentence_the_page_scripts_mark_has_a_chinese_translation():
    """As for the Python code and the templates: a string a script marks but djangojs.po
    lacks shows in English on a Chinese page."""
    po = polib.pofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "djangojs.po"))
    translated = {(e.msgctxt, e.msgid, e.msgid_plural or None) for e in po.translated_entries()}
    marked = script_msgids()
    assert len(marked) > 150 and (None, "Stop", None) in marked
    assert sorted(marked - translated, key=str) == []


def test_a_key_this_server_can_no_longer_read_is_said_in_the_pages_language(client, user, settings):
    import base64
    import os

    from chat.crypto import encryption_keys_changed, secret_encrypt
    from chat.models import ApiKey

    def encryption_key_now(key: str) -> None:
        settings.ENCRYPTION_KEYS = [key]
        encryption_keys_changed()

    try:
        encryption_key_now(base64.urlsafe_b64encode(os.urandom(32)).decode())
        key = ApiKey.objects.create(user=user, label="Work", base_url="https://api.01.ai/v1",
                                    key_encrypted=secret_encrypt("sk-lost-0123456789"), key_last4="6789")
        encryption_key_now(base64.urlsafe_b64encode(os.urandom(32)).decode())  # the old one is lost
        client.force_login(user)
        response = client.get(f"/api/models?key_id={key.pk}", headers={"accept-language": "zh-CN"})
        assert (response.status_code, response.json()) == (404, {
            "code": "key_unreadable",
            "message": "本服务器已无法读取密钥“Work”（加密它的密钥已更换）。请在“密钥”页面删除它，再重新添加。"})
    finally:
        encryption_keys_changed()  # rebuilt from the settings as they are put back after the test
