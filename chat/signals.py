"""Receivers of Django's signals: a session that ends closes its websockets."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat.accounts import sockets_sign_out


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        sockets_sign_out(user_id=user.pk, session_key=request.session.session_key)


@receiver(post_save, sender=get_user_model())
def _deactivated(sender, instance, created, **kwargs) -> None:
    if not created and not instance.is_active:
        sockets_sign_out(user_id=instance.pk)


@receiver(post_delete, sender=get_user_model())
def _deleted(sender, instance, **kwargs) -> None:
    sockets_sign_out(user_id=instance.pk)
