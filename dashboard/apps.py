from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The pages of accounts and teams: sign-up, log-in, teams, invitations, API keys.

    Their models stay in accounts, which imports nothing above it; these pages also read
    usage (a key's spend this month) and the gateway (the catalog's models).
    """

    name = "dashboard"
    verbose_name = "Dashboard pages"
