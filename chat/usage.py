"""What a person's answers used: tokens and cost per day over the last 30 days, per model,
and per API key (the Keys page). Reads, one query each; the cost is what each answer
stored when it ended (`Message.cost_usd`, chat/endings.py), so a later change of prices
does not rewrite the past. Drawn by the server as SVG (templates/chat/usage.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from chat.models import Message

DAYS = 30
CHART_HEIGHT = 100  # the SVG's own units; bars are drawn in them


@dataclass
class Tally:
    """Tokens and cost of some answers. `cost` counts only answers whose price is known;
    `unpriced` says how many tokens had none (another provider's model); `estimated` how
    many are the app's estimate, for answers that ended before the upstream's usage came
    (`Message.usage_estimated`, chat/endings.py)."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced_tokens: int = 0
    estimated_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, row: dict) -> None:
        """Add a row of `_figures`."""
        self.answers += row["answers"]
        self.prompt_tokens += row["prompt"]
        self.completion_tokens += row["completion"]
        self.cost += row["cost"] or 0
        self.unpriced_tokens += row["unpriced"]
        self.estimated_tokens += row["estimated"]


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


def _first_day(today: date | None) -> date:
    return (today or timezone.localdate()) - timedelta(days=DAYS - 1)


def _answers(user: AbstractBaseUser, first: date) -> QuerySet[Message]:
    """The user's answers with token figures, from the start of `first` (local time)."""
    start = timezone.make_aware(datetime.combine(first, time.min))
    return Message.objects.filter(
        conversation__user=user, role=Message.Role.ASSISTANT, created_at__gte=start
    ).exclude(prompt_tokens=None, completion_tokens=None)


# Each group's answers, tokens in and out, stored cost, the tokens of answers with no
# known price, and those of answers whose figures are estimates.
_tokens = Coalesce("prompt_tokens", Value(0)) + Coalesce("completion_tokens", Value(0))
_figures = {
    "answers": Count("id"),
    "prompt": Coalesce(Sum("prompt_tokens"), 0),
    "completion": Coalesce(Sum("completion_tokens"), 0),
    "cost": Sum("cost_usd"),
    "unpriced": Coalesce(Sum(_tokens, filter=Q(cost_usd=None)), 0),
    "estimated": Coalesce(Sum(_tokens, filter=Q(usage_estimated=True)), 0),
}


def usage_read(*, user: AbstractBaseUser, today: date | None = None) -> Usage:
    """The last DAYS days up to `today` (the current time zone's), every day present."""
    first = _first_day(today)
    rows = _answers(user, first).annotate(day=TruncDate("created_at")).values("day", "model").annotate(**_figures)
    days = {first + timedelta(days=i): Day(day=first + timedelta(days=i)) for i in range(DAYS)}
    usage = Usage(days=list(days.values()), models={})
    for row in rows:
        if row["day"] in days:
            days[row["day"]].add(row)
        usage.models.setdefault(row["model"], Tally()).add(row)
        usage.total.add(row)
    busiest = max((d.total_tokens for d in usage.days), default=0)
    for day in usage.days:
        day.bar_height = round(CHART_HEIGHT * day.total_tokens / busiest, 2) if busiest else 0.0
    usage.models = dict(sorted(usage.models.items(), key=lambda item: -item[1].total_tokens))
    return usage


def key_usage_read(*, user: AbstractBaseUser, today: date | None = None) -> dict[int, Tally]:
    """Each of the user's keys' answers over the same DAYS days (key id -> Tally); a key
    with none is absent."""
    rows = _answers(user, _first_day(today)).exclude(api_key=None).values("api_key_id").annotate(**_figures)
    tallies: dict[int, Tally] = {}
    for row in rows:
        tallies.setdefault(row["api_key_id"], Tally()).add(row)
    return tallies
