"""MariaDB / MySQL only: the indexes and key collations the models cannot declare there.

MySQL has no partial indexes, so Django creates none of the models' conditional
indexes or the conditional unique constraint on ``unique_key``: this migration
creates plain equivalents (a unique index on a nullable column allows many
NULLs, which is the same promise). Key columns get a binary, no-pad collation:
with the usual case-insensitive defaults ``"Report"`` and ``"report"`` (or
``"report "``) would be one unique key, one concurrency key, one queue.
Nothing happens on other databases.
"""

from django.db import migrations

_JOB = "django_durable_jobs_job"

_INDEXES = [
    # The claim, in its ORDER BY (priority DESC needs MariaDB 10.8+ / MySQL 8.0+
    # to be read in order; see docs/topics/databases.md).
    ("ddj_my_ready", _JOB, "status, waiting_for, priority DESC, run_at, id", False),
    ("ddj_my_ready_queue", _JOB, "status, waiting_for, queue, priority DESC, run_at, id", False),
    ("ddj_my_lease", _JOB, "status, lease_expires_at", False),
    ("ddj_my_worker", _JOB, "worker_id", False),
    ("ddj_my_concurrency", _JOB, "status, concurrency_key, concurrency_limit", False),
    ("ddj_my_finished", _JOB, "status, finished_at", False),
    ("ddj_my_finished_name", _JOB, "name, status, id", False),
    ("ddj_my_finished_queue", _JOB, "queue, status, id", False),
    ("ddj_my_run", _JOB, "run_id", False),
    ("ddj_my_waiting", _JOB, "waiting_for", False),
    ("ddj_my_expiring", _JOB, "status, expires_at", False),
    ("ddj_my_unique_key", _JOB, "unique_key", True),
]

# (model, field): columns compared for equality by a guarantee.
_EXACT_COLUMNS = [
    ("Job", "queue"),
    ("Job", "unique_key"),
    ("Job", "concurrency_key"),
    ("Job", "rate_key"),
    ("RateStart", "key"),
    ("QueueState", "name"),
    ("ScheduleTick", "schedule"),
]


def _exact_collation(connection) -> str:
    return "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    quote = schema_editor.quote_name
    collation = _exact_collation(connection)
    for model_name, field_name in _EXACT_COLUMNS:
        model = apps.get_model("django_durable_jobs", model_name)
        field = model._meta.get_field(field_name)
        null = "NULL" if field.null else "NOT NULL"
        schema_editor.execute(
            f"ALTER TABLE {quote(model._meta.db_table)} MODIFY {quote(field.column)} "
            f"{field.db_type(connection)} CHARACTER SET utf8mb4 COLLATE {collation} {null}"
        )
    for name, table, columns, unique in _INDEXES:
        kind = "UNIQUE INDEX" if unique else "INDEX"
        schema_editor.execute(f"CREATE {kind} {name} ON {quote(table)} ({columns})")


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    for name, table, _, _ in _INDEXES:
        schema_editor.execute(f"DROP INDEX {name} ON {schema_editor.quote_name(table)}")


class Migration(migrations.Migration):
    atomic = False  # MySQL cannot roll DDL back, and Django refuses DDL in a transaction there

    dependencies = [
        ("django_durable_jobs", "0007_schedule_entries"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
