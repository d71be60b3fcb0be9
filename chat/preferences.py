"""A person's preferences: the theme of every page, and the settings a new conversation
starts from (its system prompt and sampling parameters). One row per person, made at the
first change; until then, the defaults (follow the system; the API's own parameters)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils.translation import gettext_noop

from chat.catalog import REFERENCE_MODELS
from chat.input_checks import PARAM_DEFAULTS, PARAM_RANGES, max_tokens_bound, params_validate, system_prompt_validate
from chat.models import Preferences
from chat.refusals import SendRefused


def preferences_get(*, user_id: int) -> Preferences:
    """The person's preferences, or the defaults (unsaved) when they never changed one."""
    return Preferences.objects.filter(user_id=user_id).first() or Preferences(user_id=user_id)


def preferences_of_request(request: Any) -> Preferences:
    """The signed-in person's preferences, read once per request (the theme for every
    page's <html>, the defaults for the chat page)."""
    if not hasattr(request, "_yiweb_preferences"):
        request._yiweb_preferences = preferences_get(user_id=request.user.pk)
    return request._yiweb_preferences


def theme_set(*, user: AbstractBaseUser, theme: Any) -> str:
    """Keep the person's theme ("system", "light" or "dark"); raises SendRefused otherwise."""
    if theme not in Preferences.Theme.values:
        raise SendRefused("bad_theme", gettext_noop("Pick a theme: follow the system, light or dark."), field="theme")
    Preferences.objects.update_or_create(user_id=user.pk, defaults={"theme": theme})
    return theme


def defaults_set(*, user: AbstractBaseUser, raw: dict[str, Any]) -> dict[str, Any]:
    """Keep the settings the person's new conversations start from: `system_prompt` and the
    sampling parameters, checked as a send's are (max_tokens by the general bound: the
    model is picked later, and a send checks it against that model's window). A parameter
    left out or null is the API's default. Returns them as `settings_to_dict` does."""
    system_prompt = system_prompt_validate(raw.get("system_prompt") or "")
    params = {name: value for name, value in params_validate(raw).items() if value is not None}
    preferences, _ = Preferences.objects.update_or_create(
        user_id=user.pk, defaults={"system_prompt": system_prompt, "params": params}
    )
    return defaults_to_dict(preferences)


def defaults_to_dict(preferences: Preferences) -> dict[str, Any]:
    """The settings a new conversation starts from, as a conversation's are given to the
    page (docs/websocket.md): `system_prompt` and `params`."""
    return {"system_prompt": preferences.system_prompt, "params": preferences.params}


def params_limits() -> dict[str, Any]:
    """What the page's Settings show and check before sending: each parameter's range and
    the reference's default, and the windows that bound max_tokens for the models the app
    knows (any other model: the general bound, the range's `max`)."""
    known = [*REFERENCE_MODELS, *settings.MODEL_CONTEXT_WINDOWS]
    return {
        "ranges": {name: {"min": low, "max": high, "default": PARAM_DEFAULTS[name]}
                   for name, (low, high, _) in PARAM_RANGES.items()},
        "windows": {model: max_tokens_bound(model) for model in known},
    }
