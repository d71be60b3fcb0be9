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
