"""Per-person limits on answers being written at once and on sends per minute: a read of
how much each person has going on, made in the transaction of the sends (chat/conversations.py)
and reruns (chat/reruns.py) it may refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_noop

from chat.models import Message
from chat.refusals import SendRefused


@dataclass
class UserUsage:
    """How much each user has going on now: answers streaming and messages sent in the
    last minute, read in two queries for a whole batch, to refuse what is over the limits
    (USER_ANSWERS_AT_ONCE, USER_SENDS_PER_MINUTE). Without them one socket started 1,000
    conversations in 2 s, 521 upstream streams at once on the server's key."""

    running: dict[int, int]
    sent: dict[int, int]

    @classmethod
    def read(cls, user_ids: set[int]) -> UserUsage:
        streaming = Message.objects.filter(status=Message.Status.STREAMING, conversation__user__in=user_ids)
        recent = Message.objects.filter(
            role=Message.Role.USER, conversation__user__in=user_ids, created_at__gte=timezone.now() - timedelta(minutes=1)
        )
        return cls(
            running=dict(streaming.values("conversation__user").annotate(n=Count("id")).values_list("conversation__user", "n")),
            sent=dict(recent.values("conversation__user").annotate(n=Count("id")).values_list("conversation__user", "n")),
        )

    def refusal(self, user_id: int, *, sending: bool) -> SendRefused | None:
        limit = settings.USER_ANSWERS_AT_ONCE
        if self.running.get(user_id, 0) >= limit:
            return SendRefused(
                "too_many_answers",
                gettext_noop("You already have %(limit)s answers being written (the limit). Wait for one to finish, "
                             "or stop one."),
                params={"limit": limit},
            )
        limit = settings.USER_SENDS_PER_MINUTE
        if sending and self.sent.get(user_id, 0) >= limit:
            return SendRefused(
                "too_many_sends",
                gettext_noop("You have sent %(limit)s messages in the last minute (the limit). Wait a moment, then "
                             "send again."),
                params={"limit": limit},
            )
        return None

    def count(self, user_id: int, *, sending: bool) -> None:
        self.running[user_id] = self.running.get(user_id, 0) + 1
        if sending:
            self.sent[user_id] = self.sent.get(user_id, 0) + 1
