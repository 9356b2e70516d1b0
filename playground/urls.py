from django.urls import path

from playground import views

app_name = "playground"

urlpatterns = [
    path("teams/<int:team_id>/playground/", views.playground, name="playground"),
    path("teams/<int:team_id>/playground/session", views.session_token, name="session"),
    path(
        "teams/<int:team_id>/playground/cost/<str:request_id>",
        views.request_cost,
        name="cost",
    ),
]
