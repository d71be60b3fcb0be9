"""Pages and small JSON endpoints. Thin: parse, check who is asking, delegate, render."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.db import IntegrityError
from django.templatetags.static import static
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from chat import accounts, conversations
from chat.account_forms import SignInForm, SignUpForm
from chat.account_throttle import Refusal
from chat.generation import upstream_client
from chat.upstream import UpstreamError

MODELS_CACHE_SECONDS = 300
# Shown when the upstream cannot list its models, so the picker still offers something.
REFERENCE_MODELS = ["yi-large", "yi-large-turbo", "yi-large-fc", "yi-vision"]


def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    messages_data: list[dict] = []
    if conversation_id is not None:
        try:
            conversation = conversations.conversation_get(user=request.user, conversation_id=conversation_id)
        except conversations.SendRefused:
            raise Http404("No such conversation") from None
        messages_data = [
            conversations.message_to_dict(m) for m in conversations.message_thread(conversation=conversation)
        ]
    return render(
        request,
        "chat/chat.html",
        {
            "conversations": conversations.conversation_list(user=request.user),
            "conversation": conversation,
            "conversation_data": conversations.conversation_to_dict(conversation) if conversation else None,
            "messages_data": messages_data,
            "default_model": conversation.model if conversation else settings.YI_DEFAULT_MODEL,
            "simulator": settings.YI_SIMULATOR,
        },
    )


async def models_json(request: HttpRequest) -> JsonResponse:
    """The models the configured key may use (`GET /models`), cached for a few minutes."""
    key = f"yiweb:models:{settings.YI_API_BASE}"
    models = await cache.aget(key)
    if models is None:
        try:
            listed = await upstream_client().list_models()
        except UpstreamError as error:
            return JsonResponse(
                {"models": [{"id": m} for m in REFERENCE_MODELS], "default": settings.YI_DEFAULT_MODEL, "error": error.message},
                status=502,
            )
        models = [{"id": m["id"], "owned_by": m.get("ownedBy") or m.get("owned_by", "")} for m in listed]
        await cache.aset(key, models, MODELS_CACHE_SECONDS)
    return JsonResponse({"models": models, "default": settings.YI_DEFAULT_MODEL})


ADMINISTRATOR_WELCOME = (
    "Welcome, {username}. As the first account, you are this server's administrator: "
    "the Admin link at the top opens the admin site, where you manage accounts and conversations."
)


class SignInView(LoginView):
    """Django's sign-in page, with limits, and the way to sign-up and password reset shown
    when they are open."""

    form_class = SignInForm

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "signup_open": settings.SIGNUP_OPEN,
                "password_reset": bool(settings.EMAIL_HOST)}

    def form_invalid(self, form):
        return _refused(super().form_invalid(form), form.refusal)


@login_not_required
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:home")
    form = SignUpForm(request.POST or None, request=request)
    if request.method == "POST" and settings.SIGNUP_OPEN and form.is_valid():
        try:
            user = accounts.user_create(form=form)
        except IntegrityError:  # taken since the form looked
            form.username_unavailable()
        else:
            login(request, user)
            if user.is_superuser:
                messages.success(request, ADMINISTRATOR_WELCOME.format(username=user.get_username()))
            return redirect("chat:home")
    status = 200 if settings.SIGNUP_OPEN or request.method == "GET" else 403
    context = {"form": form, "signup_open": settings.SIGNUP_OPEN,
               "first_account": settings.SIGNUP_OPEN and not get_user_model().objects.exists()}
    return _refused(render(request, "registration/signup.html", context, status=status), form.refusal)


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's)."""
    return redirect(static("site/favicon.svg"))


def when_email_configured(view):
    """Password reset mails a link: without a mail server its pages do not exist."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.EMAIL_HOST:
            raise Http404("Password reset is off: no mail server is configured (EMAIL_HOST).")
        return view(request, *args, **kwargs)

    return wrapped


def _refused(response: HttpResponse, refusal: Refusal | None) -> HttpResponse:
    if refusal is not None:
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
    return response
