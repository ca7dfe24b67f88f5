"""MariaDB / MySQL only: the indexes and key collations the models cannot declare there.

MySQL has no partial indexes: Django creates the models' conditional indexes
without their condition (``models.W037``) and the conditional unique constraint
on ``unique_key`` not at all (``models.W036``). This migration adds only what
that leaves missing: the claim's order after the status, and a unique index on
``unique_key`` (on a nullable column it allows many NULLs: the same promise).
Every index costs each status change a write, so there is no other.

Key columns (queues, keys, schedule names) get a binary, no-pad collation: with the usual case-insensitive defaults ``"Report"`` and
``"report"`` (or ``"report "``) would be one unique key, one concurrency key,
one queue; and columns compared with each other must share a collation.
Nothing happens on other databases.
"""

from django.db import migrations

_JOB = "django_durable_jobs_job"

_INDEXES = [
    # The claim, in its ORDER BY (priority DESC needs MariaDB 10.8+ / MySQL 8.0+
    # to be read in order; see docs/topics/databases.md). The models' own
    # ddj_job_ready indexes exist here too, without their condition, so without
    # the status: they would read the history before the backlog.
    ("ddj_my_ready", _JOB, "status, waiting_for, priority DESC, run_at, id", False),
    ("ddj_my_ready_queue", _JOB, "status, waiting_for, queue, priority DESC, run_at, id", False),
    # Group callbacks still waiting (the model's ddj_job_waiting is on run_id alone).
    ("ddj_my_waiting", _JOB, "waiting_for", False),
    # The conditional unique constraint, which Django does not create at all here.
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
    ("ScheduleState", "name"),
    ("ScheduleEntry", "name"),
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
