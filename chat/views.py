"""Pages and small JSON endpoints. Thin: parse, check who is asking, delegate, render."""

from __future__ import annotations

import functools
from urllib.parse import unquote

from asgiref.sync import sync_to_async

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LoginView
from django.db import IntegrityError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop
from django.views.decorators.http import require_POST

from chat import accounts, attachments, catalog, exports, history, imports, organise, preferences, search, usage
from chat.input_checks import frame_key_choice, text_storable
from chat.account_forms import SignInForm, SignUpForm
from chat.account_throttle import Refusal
from chat.credentials import KeyChoice, credentials_for, key_choices
from chat.images import ImageRefused, image_too_large
from chat.refusals import SendRefused, refusal_said
from chat.sentences import message_said, said
from chat.tools import tool_specs
from chat.upstream import Credential
from chat.upstream_errors import UpstreamError


def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    messages_data: list[dict] = []
    if conversation_id is not None:
        try:
            conversation = history.conversation_get(user=request.user, conversation_id=conversation_id)
        except SendRefused:
            raise Http404("No such conversation") from None
        messages_data = [
            message_said(history.message_to_dict(m)) for m in history.message_thread(conversation=conversation)
        ]
    listed, after = history.conversation_list(user=request.user)
    return render(
        request,
        "chat/chat.html",
        {
            "conversations": listed,
            "conversations_next": after.encode() if after else None,
            "conversation": conversation,
            "conversation_data": history.conversation_to_dict(conversation) if conversation else None,
            "messages_data": messages_data,
            "default_model": conversation.model if conversation else settings.YI_DEFAULT_MODEL,
            "key_choices": key_choices(user_id=request.user.pk),
            # The built-in tools, for the Tools control's named choices (tool_cards.js).
            "tool_list": [
                {"name": spec["function"]["name"], "description": spec["function"]["description"]}
                for spec in tool_specs()
            ],
            "simulator": settings.YI_SIMULATOR,
            # The Settings dialog: where a new conversation starts, and the ranges it checks.
            "conversation_defaults": preferences.defaults_to_dict(preferences.preferences_of_request(request)),
            "params_limits": preferences.params_limits(),
        },
    )


def conversations_json(request: HttpRequest) -> JsonResponse:
    """A page of the list: `?archived=1` for the archived ones, `?after=<cursor>` for the
    page after the one that gave that cursor as its `next`."""
    after = None
    if request.GET.get("after"):
        after = history.ListCursor.decode(request.GET["after"])
        if after is None:
            return JsonResponse({"code": "bad_cursor",
                                 "message": gettext("That page of the list does not exist. Reload the page.")},
                                status=400)
    listed, following = history.conversation_list(
        user=request.user, archived=request.GET.get("archived") == "1", after=after
    )
    return JsonResponse({
        "conversations": [history.conversation_row_to_dict(c) for c in listed],
        "next": following.encode() if following else None,
    })


async def models_json(request: HttpRequest) -> JsonResponse:
    """The models a credential may use (`GET /models`), with what the app knows of each,
    cached for a few minutes per credential (one user's list is never another's):
    `?key_id=` names one of the user's keys (or `server`, the server's), without it the one
    their sends use by default; `?refresh=1` asks the provider again."""
    user = await request.auser()
    try:
        key_id = frame_key_choice(request.GET.get("key_id") or None)
        credential = await sync_to_async(_credential_chosen)(user_id=user.pk, key_id=key_id)
    except SendRefused as refused:
        return JsonResponse({"code": refused.code, "message": refusal_said(refused)}, status=404)
    try:
        models = await catalog.models_list(credential=credential, refresh=request.GET.get("refresh") == "1")
    except UpstreamError as error:
        return JsonResponse(
            {"models": catalog.models_known(credential=credential), "default": settings.YI_DEFAULT_MODEL,
             "error": said(error.sentence)},
            status=502,
        )
    return JsonResponse({"models": models, "default": settings.YI_DEFAULT_MODEL})


def _credential_chosen(*, user_id: int, key_id: KeyChoice) -> Credential:
    return credentials_for([(user_id, key_id)])[0]


ADMINISTRATOR_WELCOME = gettext_noop(
    "Welcome, %(username)s. As the first account, you are this server's administrator: "
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
                messages.success(request, gettext(ADMINISTRATOR_WELCOME) % {"username": user.get_username()})
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


# A query longer than this is not something typed to find a conversation.
SEARCH_MAX_CHARS = 200


def search_json(request: HttpRequest) -> JsonResponse:
    """`?q=`: the user's messages and titles holding that text, newest first, each with a
    snippet whose matching parts are marked (plain text: the page shows it as text)."""
    query = request.GET.get("q", "")
    if len(query) > SEARCH_MAX_CHARS:
        return JsonResponse({"code": "query_too_long", "message": gettext(
            "Search for at most %(limit)s characters.") % {"limit": SEARCH_MAX_CHARS}},
                            status=400)
    if not text_storable(query):
        return JsonResponse({"code": "bad_query", "message": gettext(
            "That search holds a character that cannot be searched.")},
                            status=400)
    archived = {"1": True, "0": False}.get(request.GET.get("archived", ""))
    hits = search.search(user=request.user, query=query, archived=archived)
    return JsonResponse({"query": query.strip(), "results": [search.search_hit_to_dict(h) for h in hits]})


def export_download(request: HttpRequest) -> HttpResponse:
    """The user's conversations as a file: `?ids=1,2` (a selection; one id for one
    conversation) or all of them, `?format=json` (every branch and image, what import
    takes back) or `md` (the branches shown, for reading)."""
    ids = None
    if request.GET.get("ids"):
        try:
            ids = [int(i) for i in request.GET["ids"].split(",")][: organise.CHANGE_MAX]
        except ValueError:
            raise Http404("No such conversation") from None
    chosen = exports.conversations_owned(user=request.user, conversation_ids=ids)
    if not chosen:
        raise Http404("No such conversation")
    name = f"yiweb-{chosen[0].pk}" if ids and len(chosen) == 1 else f"yiweb-{timezone.localdate():%Y-%m-%d}"
    if request.GET.get("format") == "md":
        response = HttpResponse(exports.export_markdown(chosen), content_type="text/markdown; charset=utf-8")
        name += ".md"
    else:
        response = JsonResponse(exports.export_json(chosen), json_dumps_params={"ensure_ascii": False})
        name += ".json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
async def import_upload(request: HttpRequest) -> JsonResponse:
    """An export file back as new conversations: 201 with their ids, or 400 with why.
    Async, so that its images are prepared in the image worker processes as an upload's
    are (chat.imports), and the file read and checked in worker threads."""
    upload = await sync_to_async(lambda: request.FILES.get("file"), thread_sensitive=False)()
    if upload is None:
        return JsonResponse({"code": "no_file", "message": gettext("Choose an exported .json file to import.")},
                            status=400)
    if upload.size > imports.IMPORT_MAX_BYTES:
        return JsonResponse({"code": "bad_import", "message": gettext("That file is too large to import.")}, status=400)
    raw = await sync_to_async(upload.read, thread_sensitive=False)()
    try:
        ids = await imports.import_file(user=await request.auser(), raw=raw)
    except imports.ImportRefused as refused:
        return JsonResponse({"code": "bad_import", "message": refused.message}, status=400)
    return JsonResponse({"conversation_ids": ids}, status=201)


def usage_page(request: HttpRequest) -> HttpResponse:
    """Tokens and cost per day over the last 30 days, and per model: the person's own."""
    read = usage.usage_read(user=request.user)
    return render(request, "chat/usage.html", {
        "usage": read, "last_day": read.days[-1].day, "chart_width": usage.DAYS, "chart_height": usage.CHART_HEIGHT,
    })


# --- attachments --------------------------------------------------------------------


@require_POST
async def attachment_upload(request: HttpRequest) -> JsonResponse:
    """One image per request (the page uploads each file as soon as it is chosen, to show
    its progress), checked and normalised in an image worker process, never on the event
    loop nor in the database thread.

    The page sends the file as the body itself (its name in `X-File-Name`, URL-encoded):
    a multipart body is parsed by Django in Python, which held the server's cores while
    answers streamed. A multipart form with a `file` field is taken too."""
    if request.content_type == "multipart/form-data":
        upload = await sync_to_async(lambda: request.FILES.get("file"), thread_sensitive=False)()
        if upload is None:
            return JsonResponse({"code": "no_file", "message": gettext("Choose an image to attach.")}, status=400)
        size, name, read = upload.size, upload.name or "", upload.read
    else:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
        name = unquote(request.headers.get("X-File-Name", ""))
        read = request.read  # not `body`: it refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE
    if size > settings.IMAGE_MAX_BYTES:  # before reading it
        refused = image_too_large(size, settings.IMAGE_MAX_BYTES)
        return JsonResponse({"code": refused.code, "message": refusal_said(refused)}, status=400)
    try:
        raw = await sync_to_async(lambda: read(settings.IMAGE_MAX_BYTES + 1), thread_sensitive=False)()
        image = await attachments.image_prepare_elsewhere(raw)
    except ImageRefused as refused:
        return JsonResponse({"code": refused.code, "message": refusal_said(refused)}, status=400)
    except attachments.ImageWorkerLost as lost:
        return JsonResponse({"code": lost.code, "message": refusal_said(lost)}, status=503)
    user = await request.auser()
    attachment = await sync_to_async(attachments.attachment_create)(user=user, image=image, original_name=name)
    return JsonResponse(attachments.attachment_to_dict(attachment), status=201)


def attachment_file(request: HttpRequest, attachment_id: int, thumbnail: bool = False) -> FileResponse:
    """An image, to its owner only; `nosniff`, so a browser never takes it for anything else."""
    attachment = attachments.attachment_get(user=request.user, attachment_id=attachment_id)
    if attachment is None:
        raise Http404("No such image")
    stored = attachment.thumbnail if thumbnail and attachment.thumbnail else attachment.file
    media_type = "image/png" if stored.name.endswith(".png") else "image/jpeg"
    response = FileResponse(stored.open("rb"), content_type=media_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=31536000, immutable"  # the bytes behind an id never change
    return response
