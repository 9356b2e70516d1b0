"""The ledger's foreign keys lose their own indexes, which the (team, -created_at) and
(api_key, -created_at) indexes make redundant.

Dropped by name (the name Django gave them, the same on every database) rather than
through AlterField, which on SQLite would copy the whole ledger into a new table twice.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "usage_usagerecord"
INDEXES = {"api_key_id": "usage_usagerecord_api_key_id_93ec9f60",
           "team_id": "usage_usagerecord_team_id_8dc8cfad"}  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_limits_and_invitations"),
        ("usage", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{TABLE}" ("{column}")',
                )
                for column, index in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="usagerecord",
                    name=name,
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_records",
                        to=to,
                    ),
                )
                for name, to in (("api_key", "accounts.apikey"), ("team", "accounts.team"))
            ],
        )
    ]
