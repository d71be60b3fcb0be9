"""The person's preferences from any page: the theme (the switch in the top bar) and the
settings new conversations start from (the chat page's Settings, "Save as my defaults").
Thin: parse, check, call chat/preferences.py, answer."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from chat import preferences
from chat.input_checks import BAD_FRAME
from chat.refusals import SendRefused, refusal_said


def _refused(refused: SendRefused) -> JsonResponse:
    return JsonResponse({"code": refused.code, "message": refusal_said(refused), "field": refused.field}, status=400)


@require_POST
def theme_save(request: HttpRequest) -> HttpResponse:
    """Keep the theme. The page's switch asks with fetch (JSON back); without script, the
    switch is a form, and the answer goes back to the page it was on (`next`)."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        theme = preferences.theme_set(user=request.user, theme=request.POST.get("theme"))
    except SendRefused as refused:
        if wants_json:
            return _refused(refused)
        theme = None
    if wants_json:
        return JsonResponse({"theme": theme})
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = "chat:home"
    return redirect(back)


@require_POST
def defaults_save(request: HttpRequest) -> JsonResponse:
    """Keep the settings new conversations start from: a JSON object with `system_prompt`,
    `temperature`, `top_p` and `max_tokens` (null or left out: the API's default)."""
    try:
        raw = json.loads(request.body or b"{}")
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return JsonResponse({"code": "bad_request", "message": gettext(BAD_FRAME), "field": ""}, status=400)
    try:
        return JsonResponse({"defaults": preferences.defaults_set(user=request.user, raw=raw)})
    except SendRefused as refused:
        return _refused(refused)
