from django.contrib import admin
from django.urls import include, path, re_path

from dashboard.forms import ThrottledAdminAuthenticationForm
from dashboard.views.auth import ThrottledLoginView, admin_login
from gateway.api import api
from gateway.views import unknown_api_route

# The admin's log-in counts failures with the site's (Django's documented hook for its form).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("v1/", api.urls),
    # Anything else under /v1 answers in the OpenAI error envelope, not an HTML 404.
    re_path(r"^v1(?:/.*)?$", unknown_api_route),
    # Pages: accounts and teams, usage review, playground (each app owns its URL space).
    path("", include("dashboard.urls")),
    path("", include("usage.urls")),
    path("", include("playground.urls")),
    # Log-in is throttled; the rest of Django's account views (log-out, password change).
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
]
