"""Re-encrypt every saved API key under the first of ENCRYPTION_KEYS: the middle step of
rotating the encryption key (docs/security.md, "Rotating the encryption key").

Runs while the app serves: a batch of keys at a time, each batch its own short
transaction, and each key written only if its stored token is still the one read (a key
deleted meanwhile is skipped; one added meanwhile was encrypted under the first key
already). Run it again at any time: it only ever moves keys to the first key.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chat.crypto import SecretUnreadable, secret_reencrypt
from chat.models import ApiKey


class Command(BaseCommand):
    help = "Re-encrypt every saved API key under the first key of ENCRYPTION_KEYS (after putting a new key first)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=100, help="Keys per transaction (default 100).")

    def handle(self, *args, batch_size: int, **options) -> None:
        done = skipped = 0
        unreadable: list[str] = []
        after = 0
        while batch := list(
            ApiKey.objects.filter(pk__gt=after).order_by("pk").values_list("pk", "label", "user__username",
                                                                            "key_encrypted")[:batch_size]
        ):
            after = batch[-1][0]
            moved = []
            for pk, label, username, token in batch:
                try:
                    moved.append((pk, token, secret_reencrypt(token)))
                except SecretUnreadable:
                    # Named by id, label and owner: never by anything of the key.
                    unreadable.append(f"#{pk} “{label}” of {username}")
            with transaction.atomic():
                for pk, old, new in moved:
                    if ApiKey.objects.filter(pk=pk, key_encrypted=old).update(key_encrypted=new):
                        done += 1
                    else:
                        skipped += 1
        self.stdout.write(f"Re-encrypted {done} API key{'s' if done != 1 else ''} under the first of ENCRYPTION_KEYS."
                          + (f" {skipped} changed or deleted meanwhile (left as they are)." if skipped else ""))
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} key{'s' if len(unreadable) != 1 else ''} could not be opened by any of "
                f"ENCRYPTION_KEYS: {', '.join(unreadable)}. Put the encryption key they were saved with back in "
                "ENCRYPTION_KEYS (after the new one) and run this again; if it is lost, their owners must delete "
                "them on the Keys page and add them again."
            )
