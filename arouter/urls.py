from django.contrib import admin
from django.urls import include, path, re_path

from accounts.views.auth import ThrottledLoginView
from gateway.api import api
from gateway.views import unknown_api_route

urlpatterns = [
    path("v1/", api.urls),
    # Anything else under /v1 answers in the OpenAI error envelope, not an HTML 404.
    re_path(r"^v1(?:/.*)?$", unknown_api_route),
    # Pages: accounts and teams, usage review, playground (each app owns its URL space).
    path("", include("accounts.urls")),
    path("", include("usage.urls")),
    path("", include("playground.urls")),
    # Log-in is throttled; the rest of Django's account views (log-out, password change).
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
