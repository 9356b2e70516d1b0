from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "OpenAI-compatible gateway"

    def ready(self) -> None:
        # Load the catalog now so a bad catalog file stops start-up with a clear message.
        from gateway.catalog import catalog

        catalog()

        from accounts.models import key_revoked
        from gateway.realtime.revocation import announce_revoked

        key_revoked.connect(announce_revoked, dispatch_uid="gateway.realtime.revocation")
