from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    # The label the app was first installed under: existing databases keep their table
    # (limits_counter) and migration history.
    label = "limits"
    default_auto_field = "django.db.models.BigAutoField"
