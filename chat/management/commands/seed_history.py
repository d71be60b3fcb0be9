"""`manage.py seed_history --user NAME`: a year of someone's conversations, for measuring
the list, the conversation page and search at the size issue 14 asks about (10,000
conversations, 200,000 messages; bench/history.py, tests/test_history_scale.py).

What is made, the same for the same `--seed` (only the dates follow today):
- conversations started over the last year, more of them recently; a few pinned, some
  archived; a few of 500 messages, the rest from 2 to a few hundred;
- questions and answers in English, Chinese, or Chinese with English terms, from word
  lists in which some words are common and some (the `RARE_*` ones) turn up in a handful
  of messages; answers are longer, some with a code block or a list;
- each answer's parent its question, each question's parent the answer before it, and
  now and then an answer regenerated (a second version beside the first, the thread
  going on from the newer one);
- one user message in `--images-every` with an image: all of them rows naming one small
  PNG, stored once for the user through the upload path;
- PLANTED texts in exactly `count` messages each, spread evenly through the history, so
  that a search has a known answer.

Messages are written with ids chosen here, in the order they were written in time, so that
each one's parent is written before it and "newest first" by id means what it says; so
nothing else may write messages to this database while it runs.
"""

from __future__ import annotations

import base64
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from chat.attachments import attachment_create, image_prepare_upload
from chat.catalog import tokens_cost
from chat.models import Attachment, Conversation, Message
from chat.titles import title_from

BATCH = 2000
LONG_THREAD = 500
# The part of the conversations that are one long thread, at least one when messages allow.
LONG_SHARE = 1 / 1000
PINNED_SHARE = 0.01
ARCHIVED_SHARE = 0.05
REGENERATED_SHARE = 0.02
# How often a sentence holds one of the rare words: at 200,000 messages, each is in a handful.
RARE_SHARE = 0.0002

# (text, role, count): each text in exactly `count` messages of that role. Nothing else
# writes 北京, 蝾螈 or ValueError, so a search for them has exactly these hits.
PLANTED = [
    ("raise ValueError(f\"bad row: {row!r}\")", "assistant", 7),
    ("明天北京天气怎么样，要不要带伞？", "user", 5),
    ("池塘里的蝾螈会不会冬眠？", "user", 3),
]

# A 64×48 bar chart (PNG), the image every seeded attachment shows.
IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAeUlEQVR42u3asQ2AIBAFUDAO4zqO4wSO4zqOYUPvAsaGS4Dw"
    "fklDXjg4SMilPGnkLGnwAADMDlibzLof9+f4dW5KCAAAAKD7PhB4ilsBgEnvQoHbTAkBADiF2rZqJQQAAAAQ3Qe6enApIQAA"
    "AAAAAACAn2SfPQDq8gIBdxUd+VVtBQAAAABJRU5ErkJggg=="
)

# Most common first: a word's weight falls with its rank (Zipf), as in real text.
WORDS_EN = """the to of and a in is it you that for this with on be can are as not or if your from use
have will by at we do all but one which when they more there what how so about into out up then than just
like only also each time other some new first way make need should would could may get set run see file
data value list code function database model user page answer question error line name number table server
request query index result test text image token stream string type class method return call key version
system memory thread process loop input output cache config import module package deploy build commit
branch merge review schema column migration backup latency timeout retry socket buffer parser template
render session cookie header payload upload download""".split()
WORDS_ZH = """的 是 我 你 在 了 有 这个 一个 可以 我们 如何 问题 数据 什么 需要 使用 因为 所以 但是 如果 时候
方法 模型 函数 代码 文件 用户 服务器 请求 结果 时间 今天 明天 已经 还是 应该 比较 非常 怎么 为什么 工作 学习
公司 项目 系统 测试 错误 性能 内存 网络 接口 数据库 查询 索引 页面 图片 上海 广州 深圳 城市 旅行 天气 下雨
周末 朋友 家人 孩子 老师 学生 医生 健康 运动 跑步 咖啡 早餐 晚饭 电影 音乐 历史 文化 经济 市场 价格 成本
计划 目标 建议 例子 步骤 原因 区别 优点 缺点 人工智能 机器学习 翻译 文章 总结 报告 会议 邮件""".split()
# Terms a Chinese speaker writes in English in the middle of a Chinese sentence.
TERMS = "Python API JSON SQL Django GPU Docker Linux HTTP token prompt Git React CSS".split()
RARE_EN = """quokka axolotl pangolin narwhal okapi zeppelin harpsichord bassoon origami marzipan
kumquat abacus sextant theremin obsidian monsoon fjord tundra glacier sundial""".split()
RARE_ZH = """枇杷 琥珀 珊瑚 麒麟 饕餮 貔貅 葫芦 蜻蜓 蚯蚓 骆驼 鹦鹉 孔雀 榴莲 山楂 荔枝 琉璃 翡翠 玛瑙 砚台 宣纸""".split()
LANGUAGES = (("en", 0.45), ("zh", 0.40), ("mixed", 0.15))
MODELS = (("yi-lightning", 0.5), ("yi-large", 0.4), ("yi-large-turbo", 0.1))


@dataclass
class Planned:
    """A conversation before it is written: its messages' times, roles and parents."""

    language: str
    model: str
    times: list[datetime] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    parents: list[int | None] = field(default_factory=list)  # index into this conversation's messages
    ids: list[int] = field(default_factory=list)
    first_question: str = ""  # written with the conversation: its title comes from it


class Command(BaseCommand):
    help = "Seed a user with a year of conversations (for benchmarks and scale tests)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username; made if missing")
        parser.add_argument("--password", default=None, help="for a new user (default: none, cannot sign in)")
        parser.add_argument("--conversations", type=int, default=10_000)
        parser.add_argument("--messages", type=int, default=200_000)
        parser.add_argument("--images-every", type=int, default=50, help="one user message in N has an image (0: none)")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, user: str, password: str | None, conversations: int, messages: int, images_every: int,
               seed: int, **options) -> None:
        if conversations < 1 or messages < 2 * conversations:
            raise CommandError("Every conversation needs a question and its answer: --messages ≥ 2 × --conversations.")
        started = time.monotonic()
        owner = _user(user, password)
        rng = random.Random(seed)
        planned = _conversations_plan(rng, conversations, messages, timezone.now())
        order = _ids_assign(planned, start=(Message.objects.aggregate(top=Max("id"))["top"] or 0) + 1)
        # Through the upload path, which stores the file; every other row names the same file.
        image = attachment_create(user=owner, image=image_prepare_upload(IMAGE), original_name="chart.png")
        with _timestamps_as_given():
            made = _conversations_write(owner, planned, rng)
            _messages_write(owner, planned, made, order, random.Random(seed + 1), images_every, image)
        if not Attachment.objects.filter(pk=image.pk, message__isnull=False).exists():
            image.delete()  # no message of the seed has an image
        # Sends go to the conversation's leaf: here, the end of the branch each one shows.
        Conversation.objects.filter(user=owner, pk__gte=made[0].pk, pk__lte=made[-1].pk).update(leaf=Subquery(
            Message.objects.filter(conversation=OuterRef("pk")).order_by("-id").values("id")[:1]
        ))
        _sequences_reset()
        _statistics_update()
        long_ids = [c.pk for c, p in zip(made, planned) if len(p.roles) == LONG_THREAD]
        self.stdout.write(
            f"Seeded {len(made):,} conversations and {len(order):,} messages for {owner.get_username()} "
            f"in {time.monotonic() - started:.0f} s; {LONG_THREAD}-message conversations: {long_ids[:5]}."
        )


def _user(name: str, password: str | None):
    users = get_user_model()
    owner = users.objects.filter(**{users.USERNAME_FIELD: name}).first()
    if owner is None:
        owner = users.objects.create_user(name, password=password)  # None: an unusable password
    return owner


@contextlib.contextmanager
def _timestamps_as_given() -> Iterator[None]:
    """bulk_create stamps auto_now and auto_now_add fields with the present moment, over
    the past the seed gives them: switched off while it writes, back on afterwards."""
    fields = [f for m in (Conversation, Message, Attachment) for f in m._meta.concrete_fields
              if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add)]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]
    for f in fields:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


# --- the plan: who said what when, before any text --------------------------------------


def _conversations_plan(rng: random.Random, count: int, messages: int, now: datetime) -> list[Planned]:
    sizes = _sizes(rng, count, messages)
    # More recent conversations than old ones: a year's start times bunched toward today.
    starts = sorted(now - timedelta(days=365 * rng.random() ** 2, seconds=rng.random() * 3600) for _ in sizes)
    planned = []
    for size, start in zip(sizes, starts):
        conversation = Planned(_pick(rng, LANGUAGES), _pick(rng, MODELS))
        _turns_plan(rng, conversation, size, start, now)
        planned.append(conversation)
    planned.sort(key=lambda c: c.times[0])  # ids in the order they were started
    return planned


def _sizes(rng: random.Random, count: int, messages: int) -> list[int]:
    """Messages per conversation, summing to `messages`: a few of LONG_THREAD, the rest
    even numbers (question, answer) spread like real use, many short and some long."""
    long = max(1, round(count * LONG_SHARE))
    while long and messages - long * LONG_THREAD < 2 * (count - long):
        long -= 1
    rest = messages - long * LONG_THREAD
    weights = [rng.lognormvariate(0, 0.9) for _ in range(count - long)]
    total = sum(weights)
    sizes = [min(LONG_THREAD - 2, 2 + 2 * int((rest - 2 * len(weights)) / 2 * w / total)) for w in weights]
    left = rest - sum(sizes)
    while left > 0:  # what rounding left over, an odd one included (a regenerated answer)
        i = rng.randrange(len(sizes))
        if sizes[i] < LONG_THREAD - 2:
            sizes[i] += min(2, left)
            left -= min(2, left)
    sizes += [LONG_THREAD] * long
    rng.shuffle(sizes)
    return sizes


def _turns_plan(rng: random.Random, conversation: Planned, size: int, start: datetime, now: datetime) -> None:
    offsets: list[float] = []  # seconds from the first message
    answer = None

    def add(role: str, parent: int | None, wait: float) -> int:
        offsets.append((offsets[-1] if offsets else 0.0) + wait)
        conversation.roles.append(role)
        conversation.parents.append(parent)
        return len(conversation.roles) - 1

    while len(conversation.roles) < size:
        left = size - len(conversation.roles)
        if answer is not None and (left == 1 or size != LONG_THREAD and rng.random() < REGENERATED_SHARE):
            answer = add(Message.Role.ASSISTANT, conversation.parents[answer], rng.uniform(5, 120))
            continue
        # Back the same day, or days later.
        pause = rng.uniform(10, 600) if rng.random() < 0.97 else rng.uniform(1, 30) * 86400
        question = add(Message.Role.USER, answer, pause if answer is not None else 0)
        answer = add(Message.Role.ASSISTANT, question, rng.uniform(2, 40))
    # One that would run past today started earlier.
    start = min(start, now - timedelta(seconds=offsets[-1] + rng.uniform(60, 3600)))
    conversation.times = [start + timedelta(seconds=offset) for offset in offsets]


def _ids_assign(planned: list[Planned], start: int) -> list[tuple[int, int]]:
    """Every message's id, in the order they were written; returns (conversation, message)
    indexes in that order."""
    order = sorted(
        ((c.times[m], i, m) for i, c in enumerate(planned) for m in range(len(c.roles))), key=lambda t: t[:2]
    )
    for c in planned:
        c.ids = [0] * len(c.roles)
    for offset, (_, i, m) in enumerate(order):
        planned[i].ids[m] = start + offset
    return [(i, m) for _, i, m in order]


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


# --- the writes ---------------------------------------------------------------------------


def _conversations_write(owner, planned: list[Planned], rng: random.Random) -> list[Conversation]:
    text = Text(random.Random(rng.random()))
    rows = []
    for p in planned:
        p.first_question = text.question(p.language)
        # Most titles are the model's few words; the rest, the question's first line.
        by_model = rng.random() < 0.7
        title = text.title(p.first_question, p.language) if by_model else title_from(p.first_question)
        rows.append(Conversation(
            user=owner, model=p.model, title=title,
            title_source=Conversation.TitleSource.MODEL if by_model else Conversation.TitleSource.MESSAGE,
            system_prompt="Answer briefly." if rng.random() < 0.1 else "",
            pinned=rng.random() < PINNED_SHARE, archived=rng.random() < ARCHIVED_SHARE,
            created_at=p.times[0], updated_at=p.times[-1],
        ))
    made = []
    for i in range(0, len(rows), BATCH):
        with transaction.atomic():
            made += Conversation.objects.bulk_create(rows[i : i + BATCH])
    return made


def _messages_write(owner, planned: list[Planned], made: list[Conversation], order: list[tuple[int, int]],
                    rng: random.Random, images_every: int, image: Attachment) -> None:
    text = Text(rng)
    planted = _planted_places(planned, order)
    image_rows, questions, first_image = [], 0, True
    for first in range(0, len(order), BATCH):
        rows = []
        for i, m in order[first : first + BATCH]:
            p = planned[i]
            role = p.roles[m]
            if m == 0:
                content = p.first_question
            else:
                content = text.question(p.language) if role == Message.Role.USER else text.answer(p.language)
            if (i, m) in planted:
                content = text.with_planted(content, planted[(i, m)])
            parent = p.parents[m]
            rows.append(_message(p, m, made[i], content, rng, parent=None if parent is None else p.ids[parent]))
            if role == Message.Role.USER:
                questions += 1
                if images_every and questions % images_every == 0:
                    image_rows.append(p.ids[m])
        with transaction.atomic():
            Message.objects.bulk_create(rows)
            if image_rows:
                _attachments_write(owner, image, image_rows, {r.pk: r.created_at for r in rows}, bind=first_image)
                image_rows, first_image = [], False


def _message(p: Planned, m: int, conversation: Conversation, content: str, rng: random.Random, *,
             parent: int | None) -> Message:
    row = Message(id=p.ids[m], conversation=conversation, parent_id=parent, role=p.roles[m], content=content,
                  created_at=p.times[m], updated_at=p.times[m])
    if p.roles[m] == Message.Role.ASSISTANT:
        row.model = p.model
        row.params = {"temperature": 0.3}
        row.finish_reason = "stop"
        row.prompt_tokens = 20 + m * 60
        row.completion_tokens = max(1, len(content) // 3)
        row.total_tokens = row.prompt_tokens + row.completion_tokens
        row.cost_usd = tokens_cost(p.model, row.prompt_tokens, row.completion_tokens)  # as an answer's end stores it
        row.ttft_ms = rng.randint(180, 1500)
        row.duration_ms = row.ttft_ms + row.completion_tokens * 20
        row.seq = row.completion_tokens
        if rng.random() < 0.01:
            row.status, row.finish_reason = Message.Status.STOPPED, ""
    return row


def _attachments_write(owner, image: Attachment, message_ids: list[int], times: dict, *, bind: bool) -> None:
    """Rows naming the one image: `bind`, the uploaded one goes to the first message."""
    if bind:
        Attachment.objects.filter(pk=image.pk).update(message_id=message_ids[0], created_at=times[message_ids[0]])
        message_ids = message_ids[1:]
    copy = {f: getattr(image, f) for f in ("file", "thumbnail", "digest", "original_format", "media_type", "width",
                                          "height", "size_bytes", "original_name")}
    Attachment.objects.bulk_create(
        [Attachment(user=owner, message_id=pk, created_at=times[pk], **copy) for pk in message_ids]
    )


def _planted_places(planned: list[Planned], order: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Where each PLANTED text goes: evenly through the history, among its role's messages
    outside the first question (which the title repeats)."""
    places: dict[tuple[int, int], str] = {}
    for n, (text, role, count) in enumerate(PLANTED):
        candidates = [(i, m) for i, m in order if planned[i].roles[m] == role and m > 0]
        for k in range(count):
            j = int((k + 0.5 + n / len(PLANTED) / 2) * len(candidates) / count)
            while candidates[j] in places:
                j += 1
            places[candidates[j]] = text
    return places


def _statistics_update() -> None:
    """PostgreSQL plans by its statistics of each table, which autovacuum refreshes a while
    after a load this size: until then it takes a user's 10,000 conversations for 2, and
    picks plans for 2. SQLite keeps none unless ANALYZE is run, which yiweb never does."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_conversation, chat_message, chat_attachment")


def _sequences_reset() -> None:
    """PostgreSQL's id sequence knows nothing of ids given: set it past them."""
    statements = connection.ops.sequence_reset_sql(no_style(), [Message])
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


# --- the text -------------------------------------------------------------------------------


class Text:
    """Sentences from the word lists, in English, Chinese, or Chinese with English terms."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.weights_en = list(_cumulative(len(WORDS_EN)))
        self.weights_zh = list(_cumulative(len(WORDS_ZH)))

    def words(self, language: str, count: int) -> list[str]:
        if language == "en":
            words = self.rng.choices(WORDS_EN, cum_weights=self.weights_en, k=count)
        else:
            words = self.rng.choices(WORDS_ZH, cum_weights=self.weights_zh, k=count)
            if language == "mixed":
                words[self.rng.randrange(count)] = self.rng.choice(TERMS)
        if self.rng.random() < RARE_SHARE:
            words[self.rng.randrange(count)] = self.rng.choice(RARE_EN if language == "en" else RARE_ZH)
        return words

    def sentence(self, language: str, count: int, *, asking: bool = False) -> str:
        words = self.words(language, count)
        if language == "en":
            return " ".join(words).capitalize() + ("?" if asking else ".")
        for i in range(4, count - 2, self.rng.randint(4, 8)):
            words[i] += "，"
        return "".join(words) + ("？" if asking else "。")

    def question(self, language: str) -> str:
        sentences = [self.sentence(language, self.rng.randint(4, 14)) for _ in range(self.rng.randint(0, 2))]
        return " ".join([*sentences, self.sentence(language, self.rng.randint(4, 16), asking=True)])

    def answer(self, language: str) -> str:
        paragraphs = []
        for _ in range(self.rng.choice((1, 1, 2, 2, 3, 4))):
            count = self.rng.randint(1, 5)
            paragraphs.append(" ".join(self.sentence(language, self.rng.randint(5, 22)) for _ in range(count)))
        shape = self.rng.random()
        if shape < 0.15:
            paragraphs.insert(1, "\n".join("- " + self.sentence(language, self.rng.randint(3, 8)) for _ in range(3)))
        elif shape < 0.25:
            names = self.rng.sample(WORDS_EN[60:], 3)
            paragraphs.insert(1, f"```python\ndef {names[0]}_{names[1]}({names[2]}):\n"
                                 f"    return [{names[2]} for {names[2]} in {names[1]}]\n```")
        return "\n\n".join(paragraphs)

    def title(self, question: str, language: str) -> str:
        """A model's short title for the question: its first words."""
        if language == "en":
            return " ".join(question.split()[:5]).rstrip(".?").capitalize()
        return question[:10].rstrip("，。？")

    def with_planted(self, content: str, planted: str) -> str:
        """The planted text in the middle of the message: after a space in English, glued
        to the characters around it in Chinese (no spaces there)."""
        cut = len(content) // 2
        if " " in content[cut:]:
            cut = content.index(" ", cut) + 1
        return content[:cut] + planted + content[cut:]


def _cumulative(count: int) -> Iterator[float]:
    total = 0.0
    for rank in range(1, count + 1):
        total += 1 / (rank + 2)
        yield total
