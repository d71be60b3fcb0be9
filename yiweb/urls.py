from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

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

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("favicon.ico", views.favicon),
    path("", include("chat.urls")),
]
