"""What a person's answers used: tokens and cost per day over the last 30 days, and per
model. A read, in one query; drawn by the server as SVG (templates/chat/usage.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from chat.catalog import tokens_cost
from chat.models import Message

DAYS = 30
CHART_HEIGHT = 100  # the SVG's own units; bars are drawn in them


@dataclass
class Tally:
    """Tokens and cost of some answers. `cost` counts only answers whose price is known;
    `unpriced` says how many tokens had none (another provider's model)."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, *, model: str, answers: int, prompt: int, completion: int) -> None:
        self.answers += answers
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        cost = tokens_cost(model, prompt, completion)
        if cost is None:
            self.unpriced_tokens += prompt + completion
        else:
            self.cost += cost


@dataclass
class Day(Tally):
    day: date = date.min
    bar_height: float = 0.0  # in CHART_HEIGHT units, for the chart

    @property
    def bar_y(self) -> float:
        return round(CHART_HEIGHT - self.bar_height, 2)


@dataclass
class Usage:
    days: list[Day]
    models: dict[str, Tally]
    total: Tally = field(default_factory=Tally)


def usage_read(*, user: AbstractBaseUser, today: date | None = None) -> Usage:
    """The last DAYS days up to `today` (the current time zone's), every day present."""
    today = today or timezone.localdate()
    first = today - timedelta(days=DAYS - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    rows = (
        Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT, created_at__gte=start)
        .exclude(prompt_tokens=None, completion_tokens=None)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(
            answers=Count("id"),
            prompt=Coalesce(Sum("prompt_tokens"), 0),
            completion=Coalesce(Sum("completion_tokens"), 0),
        )
    )
    days = {first + timedelta(days=i): Day(day=first + timedelta(days=i)) for i in range(DAYS)}
    usage = Usage(days=list(days.values()), models={})
    for row in rows:
        figures = {"model": row["model"], "answers": row["answers"], "prompt": row["prompt"], "completion": row["completion"]}
        if row["day"] in days:
            days[row["day"]].add(**figures)
        usage.models.setdefault(row["model"], Tally()).add(**figures)
        usage.total.add(**figures)
    busiest = max((d.total_tokens for d in usage.days), default=0)
    for day in usage.days:
        day.bar_height = round(CHART_HEIGHT * day.total_tokens / busiest, 2) if busiest else 0.0
    usage.models = dict(sorted(usage.models.items(), key=lambda item: -item[1].total_tokens))
    return usage
