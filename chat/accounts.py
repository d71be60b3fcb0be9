"""Accounts: who may use this server."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AbstractUser
from django.db import transaction


def user_create(*, form: UserCreationForm) -> AbstractUser:
    """Create the user a valid sign-up form describes; the first one runs the server."""
    User = get_user_model()
    # Hash the password (deliberately slow, ~0.3 s) before taking SQLite's write lock,
    # so that sign-ups do not hold up every send and checkpoint meanwhile.
    user = form.save(commit=False)
    with transaction.atomic():
        if not User.objects.exists():
            # Whoever installs yiweb signs up first: they get the admin site too.
            user.is_staff = user.is_superuser = True
        user.save()
    return user


# --- sessions ending ------------------------------------------------------------------

# The close code that tells the page its session has ended: it goes to the sign-in page
# instead of reconnecting.
CLOSE_SIGNED_OUT = 4401


def sockets_sign_out(*, user_id: int, session_key: str | None = None) -> None:
    """Close the user's websockets, in every process: those of one session (sign-out), or
    all of them (account deactivated or deleted). A websocket is checked only when it
    opens, so without this it went on sending and receiving after either."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(
            f"user.{user_id}", {"type": "session.ended", "session_key": session_key}
        )


def session_user_id(session_key: str | None) -> str | None:
    """The user id a session still signs in (None once it has expired, been flushed or
    never existed), whatever the session engine."""
    from importlib import import_module

    from django.conf import settings

    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return store.load().get(SESSION_KEY)


def user_signed_in(*, session_key: str | None, user_id: int) -> bool:
    """Whether the session still signs in this user, and the account is still active."""
    return session_user_id(session_key) == str(user_id) and get_user_model().objects.filter(
        pk=user_id, is_active=True
    ).exists()
