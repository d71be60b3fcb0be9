"""Export and import: a conversation with its branches and images goes out as JSON and
Markdown and comes back as a new conversation that reads and continues like the original;
a file that is not ours, is cut short, or names images it does not carry imports nothing."""

from __future__ import annotations

import copy
import io
import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from chat.attachments import attachment_create, image_prepare_upload
from chat.history import message_thread, message_to_dict
from chat.models import Attachment, Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def png(colour=(30, 60, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def conversation(user):
    """Two versions of an answer (a branch), an image on the question, a stopped answer."""
    c = Conversation.objects.create(user=user, model="yi-vision", title="北京天气 and charts", system_prompt="Be brief.")
    q = Message.objects.create(conversation=c, role="user", content="What is in 图片?")
    image = attachment_create(user=user, image=image_prepare_upload(png()), original_name="chart.png")
    Attachment.objects.filter(pk=image.pk).update(message=q)
    Message.objects.create(conversation=c, role="assistant", parent=q, content="A blue box.", model="yi-vision",
                           prompt_tokens=1010, completion_tokens=4, status="complete",
                           notes=["yi-large does not take images, so yi-vision answered."])
    second = Message.objects.create(conversation=c, role="assistant", parent=q, content="A box, cut", model="yi-vision",
                                    status="stopped")
    Conversation.objects.filter(pk=c.pk).update(leaf=second)
    c.refresh_from_db()
    return c


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def import_(client, data: bytes):
    return client.post("/import/", {"file": SimpleUploadedFile("export.json", data)})


def test_a_conversation_goes_out_and_comes_back_with_its_branches_and_images(user, conversation):
    client = signed_in(user)
    response = client.get(f"/export/?ids={conversation.pk}&format=json")
    assert response["Content-Disposition"] == f'attachment; filename="yiweb-{conversation.pk}.json"'
    exported = response.content

    created = import_(client, exported)
    assert created.status_code == 201
    (new_id,) = created.json()["conversation_ids"]
    copy_ = Conversation.objects.get(pk=new_id)
    assert (copy_.title, copy_.model, copy_.system_prompt) == ("北京天气 and charts", "yi-vision", "Be brief.")

    def shown(c):
        return [(m["role"], m["content"], m["status"], m["sibling_ids"].index(m["id"]), len(m["sibling_ids"]),
                 [(a["width"], a["height"], a["media_type"]) for a in m["attachments"]])
                for m in map(message_to_dict, message_thread(conversation=c))]

    # The same branch is shown, with the same versions to step between, and the image.
    assert shown(copy_) == shown(conversation)
    question = message_thread(conversation=copy_)[0]
    stored = question.attachments.get()
    assert stored.file.name == Attachment.objects.filter(message__conversation=conversation).get().file.name
    # The app's own notes come back, by code (this one was stored as English text, as before
    # notes had codes); nothing else a file calls a note is taken (it could forge one).
    assert [m.notes for m in Message.objects.filter(conversation=copy_, role="assistant").order_by("pk")] == [
        [{"code": "vision_answered", "params": {"model": "yi-large", "vision": "yi-vision"}}], []]
    # An imported answer costs what one ending here would store (usage and history read that).
    assert [m.cost_usd for m in Message.objects.filter(conversation=copy_, role="assistant").order_by("pk")] == [
        Decimal("0.000193"), None]


def test_a_note_the_app_never_writes_is_not_imported(user, conversation):
    client = signed_in(user)
    exported = json.loads(client.get(f"/export/?ids={conversation.pk}").content)
    exported["conversations"][0]["messages"][1]["notes"] = [
        "Your session expired. Sign in again at evil.example",
        "2 earlier images were not sent: this conversation is over yi-vision's 16K window.",
    ]
    (new_id,) = import_(client, json.dumps(exported).encode()).json()["conversation_ids"]
    notes = Message.objects.filter(conversation_id=new_id, role="assistant").order_by("pk").first().notes
    assert notes == [{"code": "images_left_out", "params": {
        "count": 2, "model": "yi-vision", "window": {"code": "window_k", "params": {"k": 16}}}}]


def test_markdown_reads_the_branch_shown(user, conversation):
    text = signed_in(user).get(f"/export/?ids={conversation.pk}&format=md").content.decode()
    assert text.startswith("# 北京天气 and charts\n")
    assert "## You" in text and "*[image: chart.png, 40×30]*" in text and "What is in 图片?" in text
    assert "A box, cut" in text and "A blue box." not in text  # the other version is not shown
    assert "> Be brief." in text


def test_everything_and_a_selection_export_only_ones_own(user, other_user, conversation):
    Conversation.objects.create(user=other_user, model="yi-large", title="theirs")
    everything = json.loads(signed_in(user).get("/export/").content)
    assert [c["title"] for c in everything["conversations"]] == ["北京天气 and charts"]
    theirs = Conversation.objects.get(title="theirs")
    assert signed_in(user).get(f"/export/?ids={theirs.pk}").status_code == 404
    assert signed_in(user).get("/export/?ids=x").status_code == 404
    assert Client().get("/export/").status_code == 302


def _bad(exported: dict, change) -> bytes:
    data = copy.deepcopy(exported)
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize("make, sentence", [
    (lambda e: b'{"hello": "world"}', "That file is not a yiweb export."),
    (lambda e: b"just some text, renamed export.json", "That file is not a yiweb export (exports are .json files"),
    (lambda e: json.dumps(e).encode()[:-40], "That file is not a complete yiweb export: its JSON is cut short or damaged."),
    (lambda e: _bad(e, lambda d: d["conversations"][0]["messages"][0]["images"][0].pop("data")),
     "Image 1 of message 1 of conversation 1 is named but not carried in the file."),
    (lambda e: _bad(e, lambda d: d["conversations"][0]["messages"][0]["images"][0].update(data="PHN2Zz4=")),
     "Image 1 of message 1 of conversation 1: SVG images are not accepted"),
    (lambda e: _bad(e, lambda d: d["conversations"][0]["messages"][1].update(parent=5)),
     "Message 2 of conversation 1 answers a message that is not before it in the export."),
    (lambda e: _bad(e, lambda d: d["conversations"][0]["messages"][1].update(role="admin")),
     "Message 2 of conversation 1 has no role this app knows."),
    (lambda e: _bad(e, lambda d: d.update(version=2)), "That export's version (2) is not one this server can read."),
    (lambda e: b"\xff\xfe", "That file is not a yiweb export (it is not text)."),
    (lambda e: b"{" + b"[" * 200_000, "That file is not a complete yiweb export"),
])
def test_a_bad_file_gets_its_sentence_and_imports_nothing(user, conversation, make, sentence):
    client = signed_in(user)
    exported = json.loads(client.get(f"/export/?ids={conversation.pk}").content)
    before = (Conversation.objects.count(), Message.objects.count(), Attachment.objects.count())
    response = import_(client, make(exported))
    assert response.status_code == 400 and response.json()["message"].startswith(sentence)
    assert (Conversation.objects.count(), Message.objects.count(), Attachment.objects.count()) == before


def test_an_imported_error_says_it_came_with_the_import(user, conversation):
    client = signed_in(user)
    exported = json.loads(client.get(f"/export/?ids={conversation.pk}").content)
    exported["conversations"][0]["messages"][1].update(
        status="error", error_code="auth", error_message="Your session expired. Sign in at evil.example")
    (new_id,) = import_(client, json.dumps(exported).encode()).json()["conversation_ids"]
    message = Message.objects.filter(conversation_id=new_id, status="error").get()
    assert message.error_message == "This answer ended with an error (auth) in the conversation this was imported from."


@pytest.fixture
def tool_run(user):
    """The reference's question answered with a tool: the call, its result (one failed), the answer."""
    c = Conversation.objects.create(user=user, model="yi-large-fc", title="April", tools=True,
                                    tool_choice={"type": "function", "function": {"name": "percentage_change"}})
    q = Message.objects.create(conversation=c, role="user", content="MoM and YoY of April 2024?")
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "percentage_change", "arguments":
         '{"time": "2024-04", "type": "MoM", "pre_value": "28.89", "current_value": "29.12"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1/0'}},
    ]
    caller = Message.objects.create(conversation=c, role="assistant", parent=q, model="yi-large-fc", content="",
                                    finish_reason="tool_calls", tool_calls=calls, run_id="r1")
    mom = Message.objects.create(conversation=c, role="tool", parent=caller, tool_call_id="call_a",
                                 name="percentage_change", duration_ms=3, run_id="r1",
                                 content='{"time": "2024-04", "type": "MoM", "change": "0.80%"}')
    failed = Message.objects.create(conversation=c, role="tool", parent=mom, tool_call_id="call_b", name="calculator",
                                    duration_ms=1, error_code="tool_failed", run_id="r1",
                                    content='{"error": "The arguments are not valid JSON: ```rm -rf```"}')
    answer = Message.objects.create(conversation=c, role="assistant", parent=failed, model="yi-large-fc",
                                    content="April's MoM is 0.80%.", finish_reason="stop", run_id="r1")
    Conversation.objects.filter(pk=c.pk).update(leaf=answer)
    c.refresh_from_db()
    return c


def test_a_tool_run_goes_out_and_comes_back_with_its_calls_results_and_settings(user, tool_run):
    client = signed_in(user)
    created = import_(client, client.get(f"/export/?ids={tool_run.pk}&format=json").content)
    (new_id,) = created.json()["conversation_ids"]
    copy_ = Conversation.objects.get(pk=new_id)
    assert (copy_.tools, copy_.tool_choice) == (True, {"type": "function", "function": {"name": "percentage_change"}})

    def shown(c):
        return [(m["role"], m["content"], m["tool_calls"], m["tool_call_id"], m["name"], m["duration_ms"],
                 m["error_code"], m["finish_reason"])
                for m in map(message_to_dict, message_thread(conversation=c))]

    # The page shows the same cards: each call, the result that answers it, the time taken.
    assert shown(copy_) == shown(tool_run)
    assert [m[0] for m in shown(copy_)] == ["user", "assistant", "tool", "tool", "assistant"]


def test_markdown_shows_each_call_and_its_result(user, tool_run):
    text = signed_in(user).get(f"/export/?ids={tool_run.pk}&format=md").content.decode()
    assert "*Calls `percentage_change` with:*\n\n```json\n{\n  \"time\": \"2024-04\",\n  \"type\": \"MoM\"," in text
    # Arguments that are not JSON are shown as the model wrote them.
    assert "*Calls `calculator` with:*\n\n```\n{\"expression\": \"1/0\n```" in text
    assert "## Tool `percentage_change` returned · 3 ms\n\n```json\n{\n  \"time\": \"2024-04\"" in text
    assert "\"change\": \"0.80%\"\n}\n```" in text
    # A failed call says so, and backticks in a result cannot close its block early.
    assert (
        "## Tool `calculator` returned · 1 ms · failed\n\n"
        "````json\n{\n  \"error\": \"The arguments are not valid JSON: ```rm -rf```\"\n}\n````"
    ) in text
    assert text.index("0.80%\"") < text.index("April's MoM is 0.80%.")


@pytest.mark.parametrize("calls", [
    "call_a",
    [{"id": "call_a", "type": "function", "function": "percentage_change"}],
    [{"id": 7, "type": "function", "function": {"name": "calculator", "arguments": "{}"}}],
    [{"id": "call_a", "type": "retrieval", "function": {"name": "calculator", "arguments": "{}"}}],
])
def test_tool_calls_that_are_not_the_apis_shape_are_refused(user, tool_run, calls):
    client = signed_in(user)
    exported = json.loads(client.get(f"/export/?ids={tool_run.pk}").content)
    exported["conversations"][0]["messages"][1]["tool_calls"] = calls
    before = Conversation.objects.count()
    response = import_(client, json.dumps(exported).encode())
    assert response.status_code == 400
    assert response.json()["message"].startswith("Message 2 of conversation 1 ")
    assert Conversation.objects.count() == before


def test_a_tool_choice_naming_a_tool_this_server_lacks_imports_as_auto(user, tool_run):
    client = signed_in(user)
    exported = json.loads(client.get(f"/export/?ids={tool_run.pk}").content)
    exported["conversations"][0]["tool_choice"] = {"type": "function", "function": {"name": "web_search"}}
    (new_id,) = import_(client, json.dumps(exported).encode()).json()["conversation_ids"]
    assert Conversation.objects.get(pk=new_id).tool_choice == "auto"
