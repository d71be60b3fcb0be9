"""The secret key of a one-machine install: made on first start, kept beside the database.

`manage.py start` runs with production settings, which need a secret key; asking a new
user to make one up would break the one-command start, and a key in the code would be
everyone's. So when none is configured and the database is a SQLite file, the first
process to start writes a random one to `<database>.secret-key` (mode 0600), and every
later start (and every other process on that database) reads it back: sessions survive a
restart. The key is never printed or logged. Backing up the database folder keeps both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 50  # secrets.token_urlsafe(50): 67 characters, well past Django's 50-character check


def secret_key_weakness(key: str) -> str | None:
    """Why `key` is not good enough for production, or None. The rules of Django's own
    deploy check (security.W009), so that `check --deploy` never warns about a key we accepted."""
    if key.startswith("django-insecure-"):
        return "it starts with 'django-insecure-'"
    if len(key) < 50:
        return f"it has {len(key)} characters, fewer than 50"
    if len(set(key)) < 5:
        return "it has fewer than 5 different characters"
    return None


def secret_key_beside(database: Path) -> Path:
    return database.with_name(database.name + ".secret-key")


def secret_key_load_or_create(path: Path) -> str:
    """The secret key kept in `path`, written there first (0600) if the file does not exist yet."""
    key = key_file_load_or_create(path, make=lambda: secrets.token_urlsafe(KEY_BYTES), what="SECRET_KEY")
    weakness = secret_key_weakness(key)
    if weakness:
        raise ImproperlyConfigured(f"The secret key in {path} is not usable: {weakness}. Delete the file to make a new one.")
    return key


def key_file_load_or_create(path: Path, *, make: Callable[[], str], what: str) -> str:
    """The key kept in `path`, written there first (0600, from `make()`) if the file does
    not exist yet; `what` names the setting that would replace it, for the error.

    Two processes starting together agree: the key is written to a private temporary
    file and linked into place, so a reader never sees half a key and the loser of the
    race reads the winner's."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "w") as file:
                    file.write(make() + "\n")
                    file.flush()
                    os.fsync(file.fileno())
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    pass  # another process made it first: use theirs
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as error:
            raise ImproperlyConfigured(
                f"No {what} is set and one could not be created in {path} ({error.strerror}). "
                f"Make that folder writable, or set {what}."
            ) from None
    return path.read_text().strip()
