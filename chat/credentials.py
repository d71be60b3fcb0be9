"""Which credential (provider and key) a request upstream is made with, and the client for it.

Resolved per send, in this order:
1. the conversation's chosen key (`Conversation.api_key`), if it is still there, or the
   server's, if that is what was chosen for it (`Conversation.server_key`);
2. else the user's default key;
3. else the server's key (YI_API_KEY at YI_API_BASE), unless SERVER_KEY_FOR_ALL is off;
4. with no YI_API_KEY and no YI_API_BASE configured, the server's "key" is the offline
   simulator's, so 3 covers it.
With SERVER_KEY_FOR_ALL off and no key of their own, a person's send is refused with a
sentence that sends them to the Keys page.

A choice (`KeyChoice`) is a key id, `SERVER_KEY`, or None for "the default": so the frames,
the conversation's JSON and `GET /api/models?key_id=` name it. The server's key has a
choice of its own because a person's default is their key once they add one (the first is
made the default), and picking the server's for one conversation must not mean giving up
that default.

A read: the key is decrypted here (chat/crypto.py) into a `Credential`, which the send's
plan carries to its generation and nowhere else.
"""

from __future__ import annotations

import functools
from typing import Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from chat.crypto import SecretUnreadable, secret_decrypt
from chat.models import ApiKey, Conversation
from chat.refusals import SendRefused
from chat.upstream import Credential, YiClient

NO_KEY = gettext_noop(
    "This server asks everyone to use an API key of their own, and you have none yet. "
    "Add one on the Keys page (/keys/), then send again."
)
SERVER_KEY_OFF = gettext_noop(
    "This server asks everyone to use an API key of their own: its own key cannot be picked. "
    "Pick one of yours in the Key menu, or add one on the Keys page (/keys/)."
)
KEY_UNREADABLE = gettext_noop(
    "The key “%(label)s” can no longer be read on this server (its encryption key was changed). "
    "Delete it on the Keys page and add it again."
)


SERVER_KEY = "server"
KeyChoice = int | Literal["server"] | None


def key_choice_of(conversation: Conversation) -> KeyChoice:
    return SERVER_KEY if conversation.server_key else conversation.api_key_id


def key_choice_fields(choice: KeyChoice) -> dict[str, int | bool | None]:
    """The fields of a conversation that hold a choice."""
    if choice == SERVER_KEY:
        return {"api_key_id": None, "server_key": True}
    return {"api_key_id": choice, "server_key": False}


def server_usable() -> bool:
    """Whether people may send with the server's credential (the simulator's, always)."""
    return bool(settings.SERVER_KEY_FOR_ALL or settings.YI_SIMULATOR)


def server_credential() -> Credential:
    return Credential(base_url=settings.YI_API_BASE, api_key=settings.YI_API_KEY, yi=True,
                      tier=settings.YI_API_TIER)


def key_credential(key: ApiKey) -> Credential:
    """The credential of a stored key (decrypted); SendRefused if it cannot be read."""
    try:
        plain = secret_decrypt(key.key_encrypted)
    except SecretUnreadable:
        raise SendRefused("key_unreadable", KEY_UNREADABLE, params={"label": key.label}) from None
    # A key for the server's own Yi API base URL is for the Yi API, wherever that points.
    yi = key.base_url.rstrip("/") == settings.YI_API_BASE
    return Credential(base_url=key.base_url, api_key=plain, label=key.label, key_id=key.pk, tier=key.tier, yi=yi,
                      images_model=key.images_model or "")


def key_missing() -> SendRefused:
    return SendRefused(
        "key_not_found", gettext_noop("That API key does not exist or is not yours. Pick another on the Keys page.")
    )


def credentials_for(wanted: list[tuple[int, KeyChoice]]) -> list[Credential]:
    """The credential of each (user id, key choice) (the module's doc says in which order),
    read in one query for a whole batch of sends. SendRefused for a chosen key that is not
    that user's, the server's when people may not use it, or when no credential is left."""
    chosen = {key_id for _, key_id in wanted if key_id not in (None, SERVER_KEY)}
    keys = ApiKey.objects.filter(Q(is_default=True) | Q(pk__in=chosen), user_id__in={user_id for user_id, _ in wanted})
    by_id, defaults = {}, {}
    for key in keys:
        by_id[key.pk] = key
        if key.is_default:
            defaults[key.user_id] = key
    credentials = []
    for user_id, key_id in wanted:
        if key_id == SERVER_KEY:
            if not server_usable():
                raise SendRefused("no_key", SERVER_KEY_OFF)
            credentials.append(server_credential())
            continue
        key = by_id.get(key_id) if key_id is not None else defaults.get(user_id)
        if key_id is not None and (key is None or key.user_id != user_id):
            raise key_missing()
        if key is not None:
            credentials.append(key_credential(key))
        elif server_usable():
            credentials.append(server_credential())
        else:
            raise SendRefused("no_key", NO_KEY)
    return credentials


def key_choices(*, user_id: int) -> dict:
    """What the chat page's key picker offers: the user's keys (masked) and the server's
    credential, and whether people may use it. Never a key."""
    keys = [key_to_dict(key) for key in ApiKey.objects.filter(user_id=user_id).defer("key_encrypted")]
    server = server_credential()
    return {
        "keys": keys,
        "server": {
            "label": _("Offline simulator") if settings.YI_SIMULATOR else _("Server key"),
            "host": server.host,
            "usable": server_usable(),
        },
    }


def key_to_dict(key: ApiKey) -> dict:
    """A saved key as the pages' JSON carries it (the key picker, GET /api/keys): never the key."""
    return {"id": key.pk, "label": key.label, "host": key_host(key.base_url), "last4": key.key_last4,
            "is_default": key.is_default, "tier": key.tier}


def key_host(base_url: str) -> str:
    """The provider's host as the pages name it, with its port when it has one (two local
    servers differ only by it)."""
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return host if port is None else f"{host}:{port}"


def client_for(credential: Credential) -> YiClient:
    # Here, not at the top: pacing needs chat.requests, which needs this module (chat.catalog).
    from chat.pacing import pacing_slow_down

    return YiClient(
        credential=credential,
        rate_limited=functools.partial(pacing_slow_down, credential),
        connect_timeout=settings.UPSTREAM_CONNECT_TIMEOUT,
        stall_timeout=settings.UPSTREAM_STALL_TIMEOUT,
        max_retries=settings.UPSTREAM_MAX_RETRIES,
        retry_base=settings.UPSTREAM_RETRY_BASE,
        retry_max=settings.UPSTREAM_RETRY_MAX,
    )
