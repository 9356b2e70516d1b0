from django.core.management.base import BaseCommand

from accounts.models import ApiKey, Team


class Command(BaseCommand):
    help = "Create an API key for a team (creating the team if needed); prints the key last."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--team", required=True, help="team name")
        parser.add_argument("--name", default="default", help="a name for the key")
        parser.add_argument(
            "--skip-if-exists",
            action="store_true",
            help="do nothing if the team already has a key named --name (first-run bootstrap)",
        )

    def handle(self, *args, team: str, name: str, skip_if_exists: bool, **options) -> None:
        team_obj, created = Team.objects.get_or_create(name=team)
        if skip_if_exists and team_obj.api_keys.filter(name=name).exists():
            self.stdout.write(
                f"Team {team!r} already has a key named {name!r}; keys are shown only once. "
                f"Create another with: manage.py createkey --team {team} --name NEW_NAME"
            )
            return
        issued = ApiKey.issue(team_obj, name=name)
        if created:
            self.stdout.write(f"Created team {team!r}.")
        self.stdout.write(f"API key {name!r} for team {team!r} (shown once, store it now):")
        self.stdout.write(issued.raw)
