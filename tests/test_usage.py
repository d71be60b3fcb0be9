"""The usage page: a person's own tokens and cost per day and per model, drawn as SVG."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from chat.catalog import tokens_cost
from chat.models import ApiKey, Conversation, Message
from chat.usage import DAYS, key_usage_read, usage_read

pytestmark = pytest.mark.django_db


def answer(user, model, prompt, completion, days_ago=0, key=None):
    """An answer as chat/endings.py stores one: with its cost at the reference's prices."""
    conversation = Conversation.objects.create(user=user, model=model)
    message = Message.objects.create(conversation=conversation, role="assistant", model=model, content="x",
                                     prompt_tokens=prompt, completion_tokens=completion,
                                     total_tokens=prompt + completion, api_key=key,
                                     cost_usd=tokens_cost(model, prompt, completion))
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def test_tokens_and_cost_per_day_and_per_model_at_the_reference_prices(user, other_user):
    answer(user, "yi-large", 1_000_000, 500_000)  # $3 + $1.50
    answer(user, "yi-vision", 200_000, 100_000, days_ago=3)  # $0.057
    answer(user, "my-local-model", 10, 20, days_ago=3)  # no known price
    answer(user, "yi-large", 5, 5, days_ago=40)  # too old
    answer(other_user, "yi-large", 999, 999)  # someone else's
    usage = usage_read(user=user)
    assert len(usage.days) == DAYS and usage.days[-1].day == timezone.localdate()
    assert (usage.days[-1].total_tokens, usage.days[-1].cost) == (1_500_000, Decimal("4.5"))
    assert usage.days[-4].total_tokens == 300_030 and usage.days[-4].cost == Decimal("0.057")
    assert usage.days[-1].bar_height == 100 and usage.days[0].bar_height == 0
    assert list(usage.models) == ["yi-large", "yi-vision", "my-local-model"]
    assert usage.models["my-local-model"].unpriced_tokens == 30
    assert usage.total.cost == Decimal("4.557") and usage.total.answers == 3


def test_the_page_shows_the_chart_and_figures_to_its_owner_only(user, other_user):
    answer(user, "yi-large", 1_000_000, 500_000)
    client = Client()
    client.force_login(user)
    page = client.get("/usage/").content.decode()
    assert "<svg" in page and page.count('class="usage-bar"') == DAYS
    assert "$4.5000" in page and "yi-large" in page
    client.force_login(other_user)
    other = client.get("/usage/").content.decode()
    assert "yi-large" not in other and "No answers in the last 30 days." in other
    assert Client().get("/usage/").status_code == 302  # to the sign-in page


def test_an_answer_carries_its_cost_where_the_price_is_known(user):
    from chat.history import message_to_dict

    answer(user, "yi-vision", 1000, 2000)
    answer(user, "my-local-model", 1000, 2000)
    priced, unknown = Message.objects.order_by("pk")
    assert message_to_dict(priced)["cost_usd"] == "0.000570"
    assert message_to_dict(unknown)["cost_usd"] is None


def test_usage_and_history_read_the_cost_stored_when_the_answer_ended(user):
    """Prices change; what an answer cost does not."""
    from chat.history import message_to_dict

    answer(user, "yi-large", 1_000_000, 0)
    Message.objects.update(cost_usd=Decimal("0.5"))  # stored when yi-large cost less
    assert usage_read(user=user).total.cost == Decimal("0.5")
    assert message_to_dict(Message.objects.get())["cost_usd"] == "0.500000"


def test_each_keys_tokens_and_cost_over_the_last_30_days(user, other_user):
    work, home = (ApiKey.objects.create(user=user, label=label, base_url="https://api.01.ai/v1", key_encrypted="x",
                                        key_last4="abcd") for label in ("Work", "Home"))
    answer(user, "yi-large", 1_000_000, 500_000, key=work)
    answer(user, "local", 10, 20, days_ago=2, key=work)
    answer(user, "yi-vision", 1000, 2000, days_ago=40, key=home)  # too old
    answer(user, "yi-large", 5, 5)  # the server's key
    tallies = key_usage_read(user=user)
    assert list(tallies) == [work.pk]
    assert (tallies[work.pk].answers, tallies[work.pk].total_tokens, tallies[work.pk].cost,
            tallies[work.pk].unpriced_tokens) == (2, 1_500_030, Decimal("4.5"), 30)
    assert key_usage_read(user=other_user) == {}


def test_tokens_estimated_for_answers_stopped_early_are_counted_and_said_so(user):
    """chat/endings.py stores an estimate for an answer that ended before the upstream's usage."""
    key = ApiKey.objects.create(user=user, label="Work", base_url="https://api.01.ai/v1", key_encrypted="x",
                                key_last4="abcd")
    answer(user, "yi-large", 100, 20, key=key)
    answer(user, "yi-large", 30, 7, key=key)
    Message.objects.filter(prompt_tokens=30).update(usage_estimated=True)
    assert usage_read(user=user).total.estimated_tokens == 37
    assert key_usage_read(user=user)[key.pk].estimated_tokens == 37
    client = Client()
    client.force_login(user)
    for url, language, said in (
        ("/usage/", "en", "37 of these tokens are estimates: answers stopped or cut off before the provider said "
                          "what they used."),
        ("/usage/", "zh-CN", "其中 37 个 token 是估算的：这些回答在服务商报告用量之前就被停止或中断了。"),
        ("/keys/", "en", "(37 of them estimated: answers stopped before the provider said what they used)"),
        ("/keys/", "zh-CN", "（其中 37 个是估算的：这些回答在服务商报告用量之前就被停止了）"),
    ):
        page = " ".join(client.get(url, headers={"accept-language": language}).content.decode().split())
        assert said in page, (url, language)


def test_an_estimate_stays_marked_through_an_export_and_its_import(user):
    import json

    from django.core.files.uploadedfile import SimpleUploadedFile

    answer(user, "yi-large", 30, 7)
    answer(user, "yi-large", 100, 20)
    Message.objects.filter(prompt_tokens=30).update(usage_estimated=True)
    client = Client()
    client.force_login(user)
    exported = json.loads(client.get("/export/?format=json").content)
    marks = sorted((m["prompt_tokens"], m["usage_estimated"]) for c in exported["conversations"] for m in c["messages"])
    assert marks == [(30, True), (100, None)]
    Message.objects.all().delete()
    response = client.post("/import/", {"file": SimpleUploadedFile("export.json", json.dumps(exported).encode())})
    assert response.status_code == 201, response.content
    assert sorted(Message.objects.values_list("prompt_tokens", "usage_estimated")) == [(30, True), (100, None)]
    assert usage_read(user=user).total.estimated_tokens == 37
