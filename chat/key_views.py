"""The Keys page and its JSON: thin, as chat/views.py. The work is chat/keys.py's.

Every change is a POST with the CSRF token and ends in a redirect to the page (so a reload
repeats nothing), with a sentence saying what happened; the add form instead shows itself
again with each problem beside its field, the key never filled back in.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from chat import keys
from chat.models import ApiKey


class KeyForm(forms.Form):
    """The add form's fields and how they show. What a valid key is, is chat/keys.py's
    (`key_input_check`): no field here refuses anything, so each problem is said once, in
    the service's words."""

    label = forms.CharField(label=gettext_lazy("Label"), required=False, strip=False,
                            widget=forms.TextInput(attrs={"autocomplete": "off", "maxlength": keys.LABEL_MAX_CHARS}),
                            help_text=gettext_lazy("How you will recognise it, for example “Work” or “Personal”."))
    key = forms.CharField(
        label=gettext_lazy("API key"), required=False, strip=False,
        # Never filled back in: a form shown again asks for the key again.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false",
                                                              "autocapitalize": "off"}),
        help_text=gettext_lazy("Stored encrypted; this page shows only its last four characters."),
    )
    base_url = forms.CharField(
        label=gettext_lazy("Base URL"), required=False, strip=False, initial=keys.DEFAULT_BASE_URL,
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                     "inputmode": "url"}),
        help_text=gettext_lazy("The 01.AI Yi API, or any OpenAI-compatible API (OpenAI, vLLM, Ollama: …/v1)."),
    )
    tier = forms.CharField(label=gettext_lazy("Usage tier"), initial=ApiKey.Tier.FREE, required=False,
                           widget=forms.Select(choices=ApiKey.Tier.choices),
                           help_text=gettext_lazy(
                               "Your account's tier at the provider: requests are paced to stay within it."))
    images_model = forms.CharField(
        label=gettext_lazy("Model for images"), required=False, strip=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                      "maxlength": keys.MODEL_MAX_CHARS}),
        help_text=gettext_lazy("The model that answers messages with images when the conversation's model does "
                               "not take them, as the provider lists it (for example llava). Leave it empty for "
                               "the Yi API: yi-vision answers there."),
    )
    save_anyway = forms.BooleanField(label=gettext_lazy("Save it anyway, unchecked"), required=False)

    def refused(self, refused: keys.KeyRefused) -> None:
        for field, message in refused.errors.items():
            self.add_error(field, message)


def _id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise Http404("No such key")
    return int(raw)


def _page(request: HttpRequest, form: KeyForm, *, offer_save_anyway: bool = False) -> HttpResponse:
    return render(request, "chat/keys.html", {
        "form": form, "rows": keys.key_rows(user=request.user), "offer_save_anyway": offer_save_anyway,
        "tiers": ApiKey.Tier.choices, "model_max_chars": keys.MODEL_MAX_CHARS,
        "server_key_for_all": settings.SERVER_KEY_FOR_ALL or settings.YI_SIMULATOR,
        "simulator": settings.YI_SIMULATOR,
    })


async def keys_page(request: HttpRequest) -> HttpResponse:
    """GET: the person's keys (masked) and the add form. POST: add a key, verified first."""
    if request.method == "POST":
        form = KeyForm(request.POST)
        form.is_valid()  # always valid: it only reads the fields
        value = {name: form.cleaned_data[name] for name in ("label", "key", "base_url", "tier", "images_model")}
        user = await request.auser()
        try:
            added = await keys.api_key_add(user=user, **value, save_anyway=bool(form.cleaned_data.get("save_anyway")))
        except keys.KeyRefused as refused:
            form = KeyForm({name: v for name, v in value.items() if name != "key"})
            form.is_valid()
            form.refused(refused)
            return await sync_to_async(_page)(request, form, offer_save_anyway=refused.unverified)
        label = added.key.label
        if added.problem:
            messages.warning(request, _("Saved “%(label)s” without checking it: %(problem)s") % {
                "label": label, "problem": added.problem})
        else:
            messages.success(request, _("Saved “%(label)s”: %(host)s accepted it.") % {
                "label": label, "host": keys.key_host(added.key.base_url)})
        return redirect("chat:keys")
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return await sync_to_async(_page)(request, KeyForm())


@require_POST
async def key_verify(request: HttpRequest, key_id: str) -> HttpResponse:
    user = await request.auser()
    try:
        problem = await keys.api_key_verify(user=user, key_id=_id(key_id))
    except keys.KeyNotFound:
        raise Http404("No such key") from None
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, _("The key works: the provider accepted it just now."))
    return redirect("chat:keys")


@require_POST
def key_default(request: HttpRequest, key_id: str) -> HttpResponse:
    unset = request.POST.get("unset") == "1"
    try:
        if unset:
            key = keys.api_key_default_unset(user=request.user, key_id=_id(key_id))
        else:
            key = keys.api_key_default_set(user=request.user, key_id=_id(key_id))
    except keys.KeyNotFound:
        raise Http404("No such key") from None
    if unset:
        messages.success(request, _("“%(label)s” is no longer your default key.") % {"label": key.label})
    else:
        messages.success(request, _("“%(label)s” is now your default key.") % {"label": key.label})
    return redirect("chat:keys")


@require_POST
def key_tier(request: HttpRequest, key_id: str) -> HttpResponse:
    try:
        key = keys.api_key_tier_set(user=request.user, key_id=_id(key_id), tier=request.POST.get("tier", ""))
    except keys.KeyNotFound:
        raise Http404("No such key") from None
    except keys.KeyRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, _("“%(label)s” is paced as %(tier)s now.") % {
            "label": key.label, "tier": key.get_tier_display()})
    return redirect("chat:keys")


@require_POST
def key_images_model(request: HttpRequest, key_id: str) -> HttpResponse:
    try:
        key = keys.api_key_images_model_set(user=request.user, key_id=_id(key_id),
                                            images_model=request.POST.get("images_model", ""))
    except keys.KeyNotFound:
        raise Http404("No such key") from None
    except keys.KeyRefused as refused:
        messages.error(request, str(refused))
    else:
        if key.images_model:
            messages.success(request, _("Images sent with “%(label)s” go to %(model)s when the conversation's "
                                        "model does not take them.") % {"label": key.label, "model": key.images_model})
        else:
            messages.success(request, _("“%(label)s” names no model for images now.") % {"label": key.label})
    return redirect("chat:keys")


@require_POST
def key_delete(request: HttpRequest, key_id: str) -> HttpResponse:
    try:
        key, successor = keys.api_key_delete(user=request.user, key_id=_id(key_id))
    except keys.KeyNotFound:
        raise Http404("No such key") from None
    said = _("Deleted “%(label)s”.") % {"label": key.label}
    if successor is not None:
        said += " " + _("“%(label)s” is your default key now.") % {"label": successor.label}
    messages.success(request, said)
    return redirect("chat:keys")


@require_GET
def keys_json(request: HttpRequest) -> JsonResponse:
    """The person's keys for the chat page's key picker: [{id, label, host, last4, is_default, tier}]."""
    return JsonResponse(keys.key_list(user=request.user), safe=False)
