"""A person's API keys: adding one (checked, verified with `GET /models`, then encrypted),
verifying one again, choosing the default, the usage tier and the model for images,
deleting one; and the masked rows the Keys page and the chat page's key picker read.

The key itself is handled here only on its way in (checked, compared with the person's
other keys, sent once to `GET /models`, encrypted by chat/crypto.py); nothing this module
returns holds it. Every function takes the user and finds the key among theirs only: another
person's key id is the same `KeyNotFound` as one that does not exist.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.catalog import images_model_of
from chat.credentials import client_for, key_credential, key_host, key_to_dict
from chat.crypto import SecretUnreadable, secret_decrypt, secret_encrypt
from chat.input_checks import text_storable
from chat.models import ApiKey
from chat.refusals import SendRefused, refusal_said
from chat.sentences import said
from chat.upstream import Credential
from chat.upstream_errors import (
    AuthError,
    ConnectionFailedError,
    NotAModelListError,
    NotFoundError,
    TimeoutError_,
    UpstreamError,
)
from chat.usage import Tally, key_usage_read

DEFAULT_BASE_URL = "https://api.01.ai/v1"
LABEL_MAX_CHARS = ApiKey._meta.get_field("label").max_length
BASE_URL_MAX_CHARS = ApiKey._meta.get_field("base_url").max_length
MODEL_MAX_CHARS = ApiKey._meta.get_field("images_model").max_length
# Real keys are tens of characters; anything this long was pasted by mistake.
KEY_MAX_CHARS = 500
# Below this many characters the last four would give away too much of the key (a
# self-hosted server's key can be as short as "ollama"): the page shows none of it.
LAST4_MIN_CHARS = 12
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class KeyRefused(Exception):
    """What is wrong with a key being saved, per form field (None: the form as a whole).
    `unverified` when the only problem is that `GET /models` did not accept it, which the
    person may override ("save anyway")."""

    def __init__(self, errors: dict[str | None, str], *, unverified: bool = False):
        super().__init__(" ".join(errors.values()))
        self.errors = errors
        self.unverified = unverified


class KeyNotFound(Exception):
    """No such key among the person's own."""


@dataclass(frozen=True)
class KeyAdded:
    key: ApiKey
    problem: str = ""  # why verification failed, when it was saved anyway


@dataclass(frozen=True)
class KeyRow:
    """What the Keys page shows of a key: never the key."""

    key: ApiKey
    host: str
    usage: Tally
    images_model_default: str = ""  # what answers images when the key names no model for them


# --- checks ----------------------------------------------------------------------------


def key_input_check(
    *, label: str, key: str, base_url: str, tier: str, images_model: str = ""
) -> tuple[str, str, str, str, str | None]:
    """The cleaned (label, key, base URL, tier, model for images or None) of the add form, or
    KeyRefused naming every field that is wrong. No query: what needs the database is
    `_key_conflicts`."""
    errors: dict[str | None, str] = {}
    label = label.strip()
    if not label:
        errors["label"] = _("Give the key a label, such as “Work” or “Personal”.")
    elif len(label) > LABEL_MAX_CHARS:
        errors["label"] = _("A label can be at most %(limit)s characters (this one has %(count)s).") % {
            "limit": LABEL_MAX_CHARS, "count": len(label)}
    elif not text_storable(label) or not label.isprintable():
        errors["label"] = _("The label holds a character that cannot be stored. Type it again.")

    # What copying a key from a web page or an e-mail adds around it (a trailing newline,
    # spaces) is dropped without a word; whitespace inside is a paste gone wrong.
    key = key.strip()
    if not key:
        errors["key"] = _("Paste the API key.")
    elif any(c.isspace() for c in key):
        errors["key"] = _("The key has a space or a line break inside it, so it was pasted in pieces. "
                          "Copy it again as one piece.")
    elif len(key) > KEY_MAX_CHARS:
        errors["key"] = _("That is too long for an API key (%(count)s characters). Paste the key alone.") % {
            "count": len(key)}
    elif not (key.isascii() and key.isprintable()):
        errors["key"] = _("The key holds a character no API key has (only letters, digits and punctuation). "
                          "Copy it again.")

    base_url = base_url.strip() or DEFAULT_BASE_URL
    if problem := base_url_problem(base_url):
        errors["base_url"] = problem
    base_url = base_url.rstrip("/")

    if tier not in ApiKey.Tier.values:
        errors["tier"] = _("Pick a usage tier from the list.")
    images_model = images_model.strip()
    if problem := images_model_problem(images_model):
        errors["images_model"] = problem
    if errors:
        raise KeyRefused(errors)
    return label, key, base_url, tier, images_model or None


def images_model_problem(images_model: str) -> str:
    """Why `images_model` (stripped) cannot be a model's name, or "" if it can ("" too: none).
    Whether the provider has it is the provider's to say: a model it does not know ends the
    answer with a sentence saying so."""
    if len(images_model) > MODEL_MAX_CHARS:
        return _("A model name can be at most %(limit)s characters.") % {"limit": MODEL_MAX_CHARS}
    if any(c.isspace() for c in images_model) or not images_model.isprintable():
        return _("A model name has no spaces or line breaks. Type it as the provider lists it, for example "
                 "llava or qwen2-vl.")
    return ""


def base_url_problem(base_url: str) -> str:
    """Why `base_url` cannot be a provider's base URL, or "" if it can."""
    example = {"example": DEFAULT_BASE_URL}
    if len(base_url) > BASE_URL_MAX_CHARS:
        return _("A base URL can be at most %(limit)s characters.") % {"limit": BASE_URL_MAX_CHARS}
    if any(c.isspace() for c in base_url) or not base_url.isprintable():
        return _("The base URL has a space or a line break in it. Type it again, for example %(example)s.") % example
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return _("That is not a web address. Type the API's base URL, for example %(example)s.") % example
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return _("The base URL must start with https:// (or http://), for example %(example)s.") % example
    if parts.username is not None or parts.password is not None:
        return _("Leave the user name and password out of the base URL: the API key is sent on its own.")
    if parts.query or parts.fragment or base_url.endswith(("?", "#")):
        return _("A base URL has no ? or # part. Type only the address, for example %(example)s.") % example
    if parts.scheme.lower() == "http" and not settings.DEBUG and not _loopback(parts.hostname):
        host = parts.hostname if port is None else f"{parts.hostname}:{port}"
        return _("Plain http:// would send the key unencrypted across the network to %(host)s. Use https:// "
                 "(plain http:// is allowed only to this machine: localhost, 127.0.0.1 or ::1).") % {"host": host}
    return ""


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_last4(key: str) -> str:
    return key[-4:] if len(key) >= LAST4_MIN_CHARS else ""


def _key_conflicts(*, user: AbstractBaseUser, label: str, key: str) -> None:
    """KeyRefused if the person already has this label or this very key (found by
    decrypting their keys: the stored tokens of one key differ every time)."""
    errors: dict[str | None, str] = {}
    for saved in ApiKey.objects.filter(user=user).only("label", "key_encrypted"):
        if saved.label.casefold() == label.casefold():
            errors["label"] = _("You already have a key labelled “%(label)s”. Pick another label.") % {
                "label": saved.label}
        try:
            same = secret_decrypt(saved.key_encrypted) == key
        except SecretUnreadable:
            same = False
        if same:
            errors["key"] = _("You saved this key already, as “%(label)s”.") % {"label": saved.label}
    if errors:
        raise KeyRefused(errors)


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyProblem:
    """Why `GET /models` did not accept a key, and the form field to show it beside (None:
    the form as a whole)."""

    field: str | None
    message: str


async def key_verify(credential: Credential) -> KeyProblem | None:
    """Ask the provider for its models with this key: None if it answers with a model list,
    else what is wrong, in a sentence that says what to fix. The upstream's own words are
    not quoted: the address may be any server, and its page is not ours to show."""
    host = key_host(credential.base_url)
    check = _("Check the address; it usually ends in /v1 (for example %(example)s).") % {"example": DEFAULT_BASE_URL}
    try:
        async with asyncio.timeout(settings.KEY_VERIFY_TIMEOUT):
            await client_for(credential).list_models()
    except (TimeoutError, TimeoutError_):
        return KeyProblem("base_url", _(
            "%(host)s did not answer within %(seconds)s seconds. Check the base URL; if the service is only slow, "
            "try again.") % {"host": host, "seconds": f"{settings.KEY_VERIFY_TIMEOUT:g}"})
    except AuthError as error:
        return KeyProblem("key", _(
            "%(provider)s rejected this key (%(status)s): it is wrong, expired or disabled. Check that you copied "
            "all of it, and that it is a key for this provider.") % {"provider": said(credential.provider),
                                                                      "status": error.status})
    except NotAModelListError:
        return KeyProblem("base_url", _(
            "%(host)s answered, but not with an OpenAI-compatible list of models: this is not the base URL of "
            "such an API. %(check)s") % {"host": host, "check": check})
    except NotFoundError:
        return KeyProblem("base_url", _(
            "%(host)s has nothing at %(url)s/models (404): this is not the base URL of an OpenAI-compatible API. "
            "%(check)s") % {"host": host, "url": credential.base_url, "check": check})
    except ConnectionFailedError:
        return KeyProblem("base_url", _(
            "Could not connect to %(host)s: the name does not resolve, or nothing answers there. Check the base "
            "URL, and that the service is running.") % {"host": host})
    except UpstreamError as error:
        if error.status is not None and 300 <= error.status < 400:
            return KeyProblem("base_url", _(
                "%(host)s sends %(url)s/models elsewhere (%(status)s). Check the address (https:// rather than "
                "http://?). %(check)s") % {"host": host, "url": credential.base_url, "status": error.status,
                                           "check": check})
        if error.status:
            return KeyProblem(None, _("%(provider)s could not check the key just now (%(status)s). Try again in a "
                                      "moment.") % {"provider": said(credential.provider), "status": error.status})
        return KeyProblem(None, _("%(provider)s could not check the key just now. Try again in a moment.")
                          % {"provider": said(credential.provider)})
    return None


# --- writes ----------------------------------------------------------------------------


async def api_key_add(
    *, user: AbstractBaseUser, label: str, key: str, base_url: str, tier: str = ApiKey.Tier.FREE,
    images_model: str = "", save_anyway: bool = False,
) -> KeyAdded:
    """Check, verify and store a key; the person's first key becomes their default.
    KeyRefused (nothing stored) for bad input, a duplicate, or a key `GET /models` does not
    accept unless `save_anyway`."""
    label, key, base_url, tier, images_model = key_input_check(
        label=label, key=key, base_url=base_url, tier=tier, images_model=images_model)
    await sync_to_async(_key_conflicts)(user=user, label=label, key=key)
    # Named as chat/credentials.py names a saved key's, so the sentences match the chat's.
    yi = base_url == settings.YI_API_BASE.rstrip("/")
    credential = Credential(base_url=base_url, api_key=key, label=label, yi=yi)
    problem = await key_verify(credential)
    if problem is not None and not save_anyway:
        raise KeyRefused({problem.field: problem.message}, unverified=True)
    stored = await sync_to_async(_api_key_store)(
        user=user, label=label, key=key, base_url=base_url, tier=tier, images_model=images_model,
        verified=problem is None,
    )
    return KeyAdded(stored, problem.message if problem else "")


def _api_key_store(
    *, user: AbstractBaseUser, label: str, key: str, base_url: str, tier: str, images_model: str | None,
    verified: bool,
) -> ApiKey:
    fields = {"user": user, "label": label, "base_url": base_url, "tier": tier, "key_encrypted": secret_encrypt(key),
              "key_last4": key_last4(key), "images_model": images_model,
              "verified_at": timezone.now() if verified else None}
    first = not ApiKey.objects.filter(user=user).exists()
    try:
        with transaction.atomic():
            return ApiKey.objects.create(**fields, is_default=first)
    except IntegrityError:
        # Another tab saved a key meanwhile: one with this label, or a first key (the default).
        if ApiKey.objects.filter(user=user, label=label).exists():
            raise KeyRefused(
                {"label": _("You already have a key labelled “%(label)s”. Pick another label.") % {"label": label}}
            ) from None
        if not first:
            raise
    return ApiKey.objects.create(**fields, is_default=False)


def _key_owned(*, user: AbstractBaseUser, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(user=user, pk=key_id).first()
    if key is None:
        raise KeyNotFound(key_id)
    return key


async def api_key_verify(*, user: AbstractBaseUser, key_id: int) -> str:
    """Check a saved key again with `GET /models`: "" if it is accepted, else why not. Its
    `verified_at` says when it last passed; None once the key or its base URL is found
    wrong (a provider busy or failing for the moment leaves it as it was)."""
    key = await sync_to_async(_key_owned)(user=user, key_id=key_id)
    try:
        credential = key_credential(key)
    except SendRefused as refused:
        return refusal_said(refused)
    problem = await key_verify(credential)
    if problem is None or problem.field is not None:
        await ApiKey.objects.filter(pk=key.pk).aupdate(verified_at=None if problem else timezone.now())
    return problem.message if problem else ""


def api_key_default_set(*, user: AbstractBaseUser, key_id: int) -> ApiKey:
    """Make this key the one the person's conversations use unless they chose another."""
    with transaction.atomic():
        key = _key_owned(user=user, key_id=key_id)
        # The old default first: one default per user is a constraint, checked per statement.
        ApiKey.objects.filter(user=user, is_default=True).exclude(pk=key.pk).update(is_default=False)
        ApiKey.objects.filter(pk=key.pk).update(is_default=True)
    key.is_default = True
    return key


def api_key_default_unset(*, user: AbstractBaseUser, key_id: int) -> ApiKey:
    """This key is no longer the default: conversations that pick no key use the server's
    (a person who added a key to try a provider need not give up the server's key)."""
    key = _key_owned(user=user, key_id=key_id)
    ApiKey.objects.filter(pk=key.pk).update(is_default=False)
    key.is_default = False
    return key


def api_key_tier_set(*, user: AbstractBaseUser, key_id: int, tier: str) -> ApiKey:
    """The provider's usage tier of this key, which paces its requests (chat/pacing.py)."""
    if tier not in ApiKey.Tier.values:
        raise KeyRefused({"tier": _("Pick a usage tier from the list.")})
    key = _key_owned(user=user, key_id=key_id)
    ApiKey.objects.filter(pk=key.pk).update(tier=tier)
    key.tier = tier
    return key


def api_key_images_model_set(*, user: AbstractBaseUser, key_id: int, images_model: str) -> ApiKey:
    """The model that answers images sent with this key when the conversation's model does
    not take them ("": none of its own; chat/catalog.py says what answers then)."""
    images_model = images_model.strip()
    if problem := images_model_problem(images_model):
        raise KeyRefused({"images_model": problem})
    images_model = images_model or None
    key = _key_owned(user=user, key_id=key_id)
    ApiKey.objects.filter(pk=key.pk).update(images_model=images_model)
    key.images_model = images_model
    return key


def api_key_delete(*, user: AbstractBaseUser, key_id: int) -> tuple[ApiKey, ApiKey | None]:
    """Delete a key (its conversations fall back to the default; its answers keep their
    figures, no longer counted to a key). When it was the default, the person's oldest
    other key becomes the default, so that a person with keys never silently sends with
    the server's. Returns (the deleted key, the new default or None)."""
    with transaction.atomic():
        key = _key_owned(user=user, key_id=key_id)
        key.delete()
        successor = None
        if key.is_default:
            successor = ApiKey.objects.filter(user=user).order_by("created_at", "pk").first()
            if successor is not None:
                ApiKey.objects.filter(pk=successor.pk).update(is_default=True)
                successor.is_default = True
    return key, successor


def key_used(key_ids: set[int], *, when: datetime) -> None:
    """Mark keys as used now: called when answers they paid for end (chat/endings.py), in
    that transaction. One UPDATE for the batch."""
    if key_ids:
        ApiKey.objects.filter(pk__in=key_ids).update(last_used_at=when)


# --- reads -----------------------------------------------------------------------------


def key_rows(*, user: AbstractBaseUser) -> list[KeyRow]:
    """The person's keys for the Keys page, the default first, each with its tokens and
    cost over the last days (chat/usage.py). Two queries."""
    usage = key_usage_read(user=user)
    keys = ApiKey.objects.filter(user=user).defer("key_encrypted")
    return [KeyRow(key=key, host=key_host(key.base_url), usage=usage.get(key.pk, Tally()),
                   images_model_default=_images_model_default(key)) for key in keys]


def _images_model_default(key: ApiKey) -> str:
    # As chat/credentials.py reads a saved key, without decrypting it: only where it points counts.
    yi = key.base_url.rstrip("/") == settings.YI_API_BASE
    return images_model_of(Credential(base_url=key.base_url, api_key="", yi=yi))


def key_list(*, user: AbstractBaseUser) -> list[dict]:
    """The person's keys as the chat page's key picker reads them (GET /api/keys)."""
    return [key_to_dict(key) for key in ApiKey.objects.filter(user=user).defer("key_encrypted")]
