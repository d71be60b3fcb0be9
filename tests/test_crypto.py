"""chat/crypto.py and `manage.py keys_reencrypt`: keys are stored encrypted, and the
encryption key can be rotated (new key first, re-encrypt, drop the old) without losing one."""

from __future__ import annotations

import base64
import logging
import os
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from chat.credentials import key_credential
from chat.crypto import (
    SecretUnreadable,
    encryption_check,
    encryption_keys_changed,
    secret_decrypt,
    secret_encrypt,
    secret_reencrypt,
)
from chat.models import ApiKey

pytestmark = pytest.mark.django_db

PLAIN = "sk-rotate-me-0123456789abcdef"


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def encryption_keys(settings):
    """Set ENCRYPTION_KEYS as a restarted process would read them."""

    def use(*keys: str) -> None:
        settings.ENCRYPTION_KEYS = list(keys)
        encryption_keys_changed()

    yield use
    encryption_keys_changed()  # settings go back after this; the cache must follow


def saved(user, label: str, plain: str = PLAIN) -> ApiKey:
    return ApiKey.objects.create(user=user, label=label, base_url="https://api.01.ai/v1",
                                 key_encrypted=secret_encrypt(plain), key_last4=plain[-4:])


def test_a_secret_is_stored_as_a_token_that_differs_each_time_and_opens_again(encryption_keys):
    encryption_keys(fernet_key())
    first, second = secret_encrypt(PLAIN), secret_encrypt(PLAIN)
    assert first != second and PLAIN not in first and PLAIN[3:] not in first
    assert secret_decrypt(first) == secret_decrypt(second) == PLAIN
    with pytest.raises(SecretUnreadable):
        secret_decrypt(first[:-4] + "AAAA")  # altered


def test_a_value_that_is_not_a_fernet_key_is_refused_at_start(encryption_keys):
    encryption_keys("not-a-key")
    with pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEYS holds a value that is not a Fernet key"):
        encryption_check()


def test_development_derives_a_key_from_the_secret_key_and_says_so(encryption_keys, caplog):
    caplog.set_level(logging.WARNING)
    encryption_keys()
    assert secret_decrypt(secret_encrypt(PLAIN)) == PLAIN
    assert "ENCRYPTION_KEYS is not set" in caplog.text and PLAIN not in caplog.text


def test_rotation_new_key_first_reencrypt_then_the_old_key_can_go(user, other_user, encryption_keys):
    old, new = fernet_key(), fernet_key()
    encryption_keys(old)
    keys = [saved(user, "Work"), saved(user, "Home", PLAIN + "2"), saved(other_user, "Theirs", PLAIN + "3")]

    encryption_keys(new, old)  # every process restarted with the new key first
    added_meanwhile = saved(user, "New", PLAIN + "4")  # encrypted under the new key at once
    out = StringIO()
    call_command("keys_reencrypt", "--batch-size", "2", stdout=out)
    assert out.getvalue() == "Re-encrypted 4 API keys under the first of ENCRYPTION_KEYS.\n"

    encryption_keys(new)  # the old key dropped
    opened = [key_credential(ApiKey.objects.get(pk=k.pk)).api_key for k in [*keys, added_meanwhile]]
    assert opened == [PLAIN, PLAIN + "2", PLAIN + "3", PLAIN + "4"]
    encryption_keys(old)
    with pytest.raises(SecretUnreadable):
        secret_decrypt(ApiKey.objects.get(pk=keys[0].pk).key_encrypted)


def test_keys_no_configured_key_opens_are_named_by_id_and_label_and_the_rest_still_move(user, encryption_keys):
    lost, old, new = fernet_key(), fernet_key(), fernet_key()
    encryption_keys(lost)
    orphan = saved(user, "Orphan", PLAIN + "lost")
    encryption_keys(old)
    kept = saved(user, "Kept")
    encryption_keys(new, old)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as error:
        call_command("keys_reencrypt", stdout=out, stderr=err)
    assert out.getvalue() == "Re-encrypted 1 API key under the first of ENCRYPTION_KEYS.\n"
    assert str(error.value) == (
        f"1 key could not be opened by any of ENCRYPTION_KEYS: #{orphan.pk} “Orphan” of alice. Put the encryption "
        "key they were saved with back in ENCRYPTION_KEYS (after the new one) and run this again; if it is lost, "
        "their owners must delete them on the Keys page and add them again.")
    assert PLAIN not in out.getvalue() + str(error.value)
    encryption_keys(new)
    assert secret_decrypt(ApiKey.objects.get(pk=kept.pk).key_encrypted) == PLAIN


def test_reencrypting_twice_changes_nothing_that_matters(user, encryption_keys):
    encryption_keys(fernet_key())
    key = saved(user, "Work")
    token = ApiKey.objects.get(pk=key.pk).key_encrypted
    assert secret_decrypt(secret_reencrypt(secret_reencrypt(token))) == PLAIN
    call_command("keys_reencrypt", stdout=StringIO())
    call_command("keys_reencrypt", stdout=StringIO())
    assert secret_decrypt(ApiKey.objects.get(pk=key.pk).key_encrypted) == PLAIN
