"""Sign-in and sign-up forms: Django's own, with limits, and a sign-up that does not tell
which usernames exist before it has to."""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy

from chat import account_throttle
from chat.account_throttle import Refusal

USERNAME_UNAVAILABLE = gettext_lazy("This username is not available. Choose another.")


class _LimitedSignIn:
    """Refuses a sign-in over the limits before the password is checked (so a refusal
    tells nothing about it), and counts failures; used by the sign-in page and the admin's."""

    refusal: Refusal | None = None

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # a field left empty: its own error, nothing to count
        self.refusal = account_throttle.signin_refusal(request=self.request, username=username)
        if self.refusal is not None:
            raise ValidationError(self.refusal.message, code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if getattr(error, "code", None) == "invalid_login":
                account_throttle.signin_failed(request=self.request, username=username)
            raise
        account_throttle.signin_succeeded(username=username)
        return cleaned


class SignInForm(_LimitedSignIn, AuthenticationForm):
    pass


class AdminSignInForm(_LimitedSignIn, AdminAuthenticationForm):
    pass


class SignUpForm(BaseUserCreationForm):
    """Django's sign-up form, except that whether the username is taken is checked last,
    once everything else is valid, and counted (chat/account_throttle.py). Django's own
    form reports "A user with that username already exists." next to any other error, so a
    form with two different passwords asked about a name for free, as often as one liked.
    Here each such question either makes an account or is one of a few per hour."""

    refusal: Refusal | None = None

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def validate_unique(self):
        pass  # the username's turn comes in _post_clean, after everything else

    def _post_clean(self):
        super()._post_clean()
        if self._errors:
            return
        self.refusal = account_throttle.signup_refusal(request=self.request)
        if self.refusal is not None:
            self.add_error(None, ValidationError(self.refusal.message, code="throttled"))
            return
        account_throttle.signup_attempted(request=self.request)
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            self.username_unavailable()

    def username_unavailable(self) -> None:
        self.add_error("username", ValidationError(USERNAME_UNAVAILABLE, code="unavailable"))
