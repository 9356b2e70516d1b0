from django.urls import path

from usage import views

app_name = "usage"

urlpatterns = [
    path("teams/<int:team_id>/usage/", views.team_usage, name="team_usage"),
    path("teams/<int:team_id>/usage/export.csv", views.export_csv, name="export_csv"),
    path("teams/<int:team_id>/usage/<int:record_id>/", views.record_detail, name="record_detail"),
]
