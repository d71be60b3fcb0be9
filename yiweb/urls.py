from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog, set_language

from chat import views

# Django's accounts pages (django.contrib.auth.urls) one by one: sign-in with limits, and
# password reset only when a mail server is configured (views.when_email_configured).
accounts = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password_reset/", views.when_email_configured(auth_views.PasswordResetView.as_view()),
         name="password_reset"),
    path("password_reset/done/", views.when_email_configured(auth_views.PasswordResetDoneView.as_view()),
         name="password_reset_done"),
    path("reset/<uidb64>/<token>/", views.when_email_configured(auth_views.PasswordResetConfirmView.as_view()),
         name="password_reset_confirm"),
    path("reset/done/", views.when_email_configured(auth_views.PasswordResetCompleteView.as_view()),
         name="password_reset_complete"),
]

# The language menu posts to set_language, which keeps the choice in Django's language
# cookie; the JavaScript catalog gives static/chat its strings (gettext, interpolate) in the
# page's language, as a same-origin script the Content-Security-Policy allows. Both work
# before sign-in: the sign-in and sign-up pages have the menu too.
i18n = [
    path("setlang/", login_not_required(set_language), name="set_language"),
    path("jsi18n/", login_not_required(JavaScriptCatalog.as_view()), name="javascript-catalog"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include(i18n)),
    path("accounts/", include(accounts)),
    path("favicon.ico", views.favicon),
    path("", include("chat.urls")),
]
