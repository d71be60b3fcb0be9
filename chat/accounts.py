"""Accounts: who may use this server."""

from __future__ import annotations

from django.contrib.auth import get_user_model
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
