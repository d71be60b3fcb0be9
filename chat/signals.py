"""Receivers of Django's signals: a session that ends closes its websockets; a deleted
attachment takes its files along once nothing else names them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.db import transaction
from django.dispatch import receiver

from chat.accounts import sockets_sign_out
from chat.attachments import attachment_files_release
from chat.models import Attachment


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


@receiver(post_delete, sender=Attachment)
def _attachment_deleted(sender, instance, **kwargs) -> None:
    # After the commit: a rolled-back deletion must find its files still there.
    names = [instance.file.name, instance.thumbnail.name]
    transaction.on_commit(lambda: attachment_files_release(names))
