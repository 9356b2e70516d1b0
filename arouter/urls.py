from django.contrib import admin
from django.urls import include, path, re_path

from gateway.api import api
from gateway.views import unknown_api_route

urlpatterns = [
    path("v1/", api.urls),
    # Anything else under /v1 answers in the OpenAI error envelope, not an HTML 404.
    re_path(r"^v1(?:/.*)?$", unknown_api_route),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
