"""The job tables: jobs, workers, queue state and the periodic-tick ledger.

The schema is designed once for every feature, so that later features need no
table rework: fencing tokens, leases, unique keys, per-key concurrency,
multi-step runs, dependencies and the schedule ledger all have their columns
here. Vendor SQL that touches these tables lives in ``db/``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .constants import PRIORITY_MAX, PRIORITY_MIN, JobStatus

READY = Q(status=JobStatus.READY, waiting_for=0)
RUNNING = Q(status=JobStatus.RUNNING)
#: In this order: raw SQL that must match the partial indexes' condition (the
#: queue list's loose scans, on SQLite textually) builds it from this list.
FINISHED_STATUSES = [JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED]
FINISHED = Q(status__in=FINISHED_STATUSES)


class JobQuerySet(models.QuerySet["Job"]):
    def ready(self) -> JobQuerySet:
        """READY jobs that could run now (not deferred, not waiting on others)."""
        return self.filter(READY, run_at__lte=timezone.now())

    def running(self) -> JobQuerySet:
        return self.filter(RUNNING)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=JobStatus.finished())

    def lease_expired(self) -> JobQuerySet:
        return self.filter(RUNNING, lease_expires_at__lt=timezone.now())


class Job(models.Model):
    """One request to run a job definition, and everything that happened to it."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(_("job name"), max_length=255)
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.SmallIntegerField(
        _("priority"), default=0, help_text=_("-100..100; higher runs first.")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.READY
    )
    args = models.JSONField(_("positional arguments"), default=list)
    kwargs = models.JSONField(_("keyword arguments"), default=dict)
    result = models.JSONField(_("result"), null=True, blank=True)
    errors = models.JSONField(
        _("attempt history"),
        default=list,
        help_text=_("One entry per attempt that did not succeed: outcome, error and traceback."),
    )

    attempts = models.PositiveIntegerField(_("attempts started"), default=0)
    max_attempts = models.PositiveIntegerField(_("max attempts"), default=5)
    timeout = models.FloatField(
        _("timeout (seconds)"), null=True, blank=True, help_text=_("Per attempt; empty: none.")
    )

    run_at = models.DateTimeField(_("run at"), default=timezone.now)
    enqueued_at = models.DateTimeField(_("enqueued at"), default=timezone.now)
    started_at = models.DateTimeField(_("last attempt started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    #: No attempt starts after this (``expires=``); a READY job past it ends CANCELLED.
    expires_at = models.DateTimeField(
        _("expires at"),
        null=True,
        blank=True,
        help_text=_("No attempt starts after this; empty: never expires."),
    )

    # Claim state. A claim sets worker_id (the worker process's uuid), bumps
    # lease_token (the fencing token: every outcome write is conditional on it)
    # and sets lease_expires_at from the database clock.
    worker_id = models.UUIDField(_("worker"), null=True, blank=True)
    lease_token = models.BigIntegerField(_("fencing token"), default=0)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)

    # Unique jobs: unique_key is set while the job is in one of unique_states (a
    # bitmask over JobStatus, see constants) and cleared when it leaves them, so
    # the database enforces "at most one job with this key in these states".
    # NULL, not "": NULLs never collide in the unique index.
    unique_key = models.CharField(_("unique key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    unique_states = models.PositiveSmallIntegerField(_("unique states"), default=0)

    # Per-key concurrency: at most concurrency_limit RUNNING jobs share a key (NULL: no key).
    concurrency_key = models.CharField(  # noqa: DJ001
        _("concurrency key"), max_length=255, null=True, blank=True
    )
    concurrency_limit = models.PositiveIntegerField(_("concurrency limit"), null=True, blank=True)

    # Rate limit (see rates.py): at most rate_limit starts of jobs with this
    # rate_key in any rate_period seconds, counted in RateStart (NULL: no limit).
    rate_key = models.CharField(_("rate key"), max_length=300, null=True, blank=True)  # noqa: DJ001
    rate_limit = models.PositiveIntegerField(_("rate limit (starts)"), null=True, blank=True)
    rate_period = models.FloatField(_("rate period (seconds)"), null=True, blank=True)

    # Multi-step runs and dependencies: run_id links the steps of one run (or the
    # members of a group), parent_id is the job that enqueued this one, and
    # waiting_for counts jobs that must finish before this one may be claimed.
    run_id = models.UUIDField(_("run"), null=True, blank=True)
    parent_id = models.BigIntegerField(_("parent job"), null=True, blank=True)
    waiting_for = models.PositiveIntegerField(_("waiting for jobs"), default=0)

    meta = models.JSONField(
        _("metadata"),
        default=dict,
        blank=True,
        help_text=_("Scheduler fire time, step and callback details, and other annotations."),
    )

    # What the running job last reported through set_progress() (see progress.py):
    # {"done", "total", "message", "at", "attempt"}; kept when the job is retried.
    progress = models.JSONField(_("progress"), null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-id"]
        indexes = [
            # The claim: ready jobs in priority, run_at, id order, for workers on
            # all queues and for workers on chosen queues. Partial, so the index
            # holds only the (small) backlog, not the history.
            models.Index(
                fields=["-priority", "run_at", "id"], name="ddj_job_ready", condition=READY
            ),
            models.Index(
                fields=["queue", "-priority", "run_at", "id"],
                name="ddj_job_ready_by_queue",
                condition=READY,
            ),
            # Lease renewal by a worker's heartbeat, and rescue of expired leases
            # (a scan of the RUNNING rows, which are few: one per busy thread).
            models.Index(fields=["worker_id"], name="ddj_job_worker", condition=RUNNING),
            # Per-key concurrency: RUNNING jobs per key, counted at claim time.
            models.Index(
                fields=["concurrency_key"],
                name="ddj_job_concurrency",
                condition=RUNNING & Q(concurrency_key__isnull=False),
            ),
            # The operations' batches and the admin's status filter, for every
            # status: "the next batch after id N" is a range scan. The only full
            # index besides the primary key: every status change writes to it.
            models.Index(fields=["status", "id"], name="ddj_job_status_id"),
            # The history: retention, throughput, and the admin's name, queue and
            # period filters over finished jobs. Partial, so that claiming a job
            # (READY -> RUNNING) writes none of them.
            models.Index(
                fields=["status", "finished_at"], name="ddj_job_finished", condition=FINISHED
            ),
            models.Index(
                fields=["name", "status", "id"], name="ddj_job_finished_name", condition=FINISHED
            ),
            models.Index(
                fields=["queue", "status", "id"], name="ddj_job_finished_queue", condition=FINISHED
            ),
            models.Index(fields=["run_id"], name="ddj_job_run", condition=Q(run_id__isnull=False)),
            # Group callbacks still waiting for members: found by the maintenance sweep.
            models.Index(fields=["run_id"], name="ddj_job_waiting", condition=Q(waiting_for__gt=0)),
            # READY jobs with an expiry, in expiry order: the expirer's batches. Only
            # jobs enqueued with expires= are in it (and write to it).
            models.Index(
                fields=["expires_at"],
                name="ddj_job_expiring",
                condition=Q(status=JobStatus.READY, expires_at__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=PRIORITY_MIN, priority__lte=PRIORITY_MAX),
                name="ddj_job_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="ddj_job_status_valid"
            ),
            models.UniqueConstraint(
                fields=["unique_key"],
                name="ddj_job_unique_key",
                condition=Q(unique_key__isnull=False),
            ),
        ]
        permissions = [
            ("retry_job", _("Can retry jobs")),
            ("cancel_job", _("Can cancel jobs")),
            ("run_job_now", _("Can run jobs now")),
            ("pause_queue", _("Can pause and resume queues")),
            ("view_job_payload", _("Can see job arguments, results and errors")),
            ("manage_schedule", _("Can enable, disable and run periodic schedules")),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.name} [{self.status}]"

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt ran, when it has finished."""
        if self.started_at and self.finished_at and self.finished_at >= self.started_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def last_error(self) -> dict[str, Any] | None:
        return self.errors[-1] if self.errors else None


class Worker(models.Model):
    """A running ``runworker`` process, as its heartbeats describe it."""

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    queues = models.JSONField(_("queues"), default=list, help_text=_("Empty: all queues."))
    concurrency = models.PositiveIntegerField(_("concurrency"))
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now, db_index=True)
    meta = models.JSONField(_("metadata"), default=dict, blank=True)

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"

    @property
    def queue_weights(self) -> dict[str, int]:
        """The weights of ``runworker --queues emails:3,reports:1``; empty: unweighted."""
        weights = (self.meta or {}).get("queue_weights")
        return weights if isinstance(weights, dict) else {}

    @property
    def queue_labels(self) -> list[str]:
        """The queues as ``--queues`` took them (``emails:3`` when weighted); empty: all."""
        weights = self.queue_weights
        return [f"{name}:{weights[name]}" if name in weights else name for name in self.queues]


class QueueState(models.Model):
    """Operator-controlled state of a queue; a queue with no row is active."""

    name = models.CharField(_("queue"), max_length=100, primary_key=True)
    paused = models.BooleanField(_("paused"), default=False)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FailedAttempts(models.Model):
    """Failed attempts per minute: the dashboard's failure figures, which a retry cannot erase.

    Written in the same statement (PostgreSQL) or transaction (SQLite) as the
    failed attempts themselves, only when a batch holds one: the success path
    never touches it. Pruned with the job history (``maintenance.pruner``).
    """

    minute = models.DateTimeField(_("minute (UTC)"), primary_key=True)
    failures = models.PositiveIntegerField(_("failed attempts"), default=0)

    class Meta:
        verbose_name = _("failed attempts per minute")
        verbose_name_plural = _("failed attempts per minute")
        ordering = ["-minute"]
        default_permissions = ()  # read by the dashboard, which view_job guards

    def __str__(self) -> str:
        return f"{self.minute.isoformat()}: {self.failures}"


class RateStart(models.Model):
    """One start of a rate-limited job: the log a sliding-window rate limit counts.

    Written by the claim that starts the job, in the same statement (PostgreSQL)
    or transaction (SQLite); ``until`` is when it leaves its window, after which
    the pruner deletes it.
    """

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(_("rate key"), max_length=300)
    at = models.DateTimeField(_("started at"))
    until = models.DateTimeField(_("counted until"))

    class Meta:
        verbose_name = _("rate-limited start")
        verbose_name_plural = _("rate-limited starts")
        default_permissions = ()
        indexes = [
            models.Index(fields=["key", "until"], name="ddj_rate_window"),
            models.Index(fields=["until"], name="ddj_rate_until"),
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.at.isoformat()}"


class ScheduleTick(models.Model):
    """The ledger of periodic ticks: one row per (schedule, fire time), enqueued exactly once.

    The row is inserted in the same transaction as the tick's job; the unique
    constraint decides which of several schedulers enqueues it.
    """

    schedule = models.CharField(_("schedule"), max_length=200)
    fire_time = models.DateTimeField(_("fire time (UTC)"))
    job_id = models.BigIntegerField(_("job"), null=True, blank=True)
    created_at = models.DateTimeField(_("enqueued at"), default=timezone.now)

    class Meta:
        verbose_name = _("schedule tick")
        verbose_name_plural = _("schedule ticks")
        ordering = ["-fire_time"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "fire_time"], name="ddj_tick_once"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule} @ {self.fire_time.isoformat()}"


class ScheduleState(models.Model):
    """Operator overrides of a periodic schedule declared in settings."""

    name = models.CharField(_("schedule"), max_length=200, primary_key=True)
    enabled = models.BooleanField(
        _("enabled"), null=True, blank=True, help_text=_("Empty: follow the settings.")
    )
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("schedule state")
        verbose_name_plural = _("schedule states")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ScheduleEntry(models.Model):
    """A periodic entry stored in the database, beside the ``PERIODIC`` setting's.

    The same vocabulary as a settings entry, validated by the same code
    (``save()`` refuses a broken entry, see ``schedule_entries``). ``version``
    grows with every change (it never repeats, even after a delete), so the
    schedulers notice any change from ``count`` and ``max(version)`` alone.
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    job = models.CharField(
        _("job"), max_length=255, help_text=_("Dotted path of a @job, or its registered name.")
    )
    schedule = models.CharField(
        _("schedule"),
        max_length=200,
        help_text=_("Cron (5 fields, or 6 with seconds first), 'hourly', 'every 5 minutes'..."),
    )
    timezone = models.CharField(
        _("time zone"), max_length=64, blank=True, help_text=_("Empty: settings.TIME_ZONE.")
    )
    args = models.JSONField(_("args"), default=list, blank=True)
    kwargs = models.JSONField(_("kwargs"), default=dict, blank=True)
    queue = models.CharField(
        _("queue"), max_length=100, blank=True, help_text=_("Empty: the job's.")
    )
    priority = models.SmallIntegerField(
        _("priority"), null=True, blank=True, help_text=_("Empty: the job's.")
    )
    missed = models.CharField(
        _("missed ticks"),
        max_length=10,
        default="latest",
        choices=[("latest", _("latest")), ("skip", _("skip")), ("catch_up", _("catch up"))],
    )
    max_delay = models.FloatField(
        _("max delay (seconds)"), null=True, blank=True, help_text=_("Required with catch up.")
    )
    overlap = models.BooleanField(
        _("overlap"),
        default=True,
        help_text=_("Off: skip a tick while the previous run is pending."),
    )
    run_on_start = models.BooleanField(_("run on start"), default=False)
    enabled = models.BooleanField(_("enabled"), default=True)
    tags = models.JSONField(_("tags"), default=list, blank=True)
    description = models.TextField(_("description"), blank=True)
    # Set by save() from the database clock (no default: the ``timezone`` field shadows
    # django.utils.timezone in this class body).
    created_at = models.DateTimeField(_("created at"), editable=False)
    updated_at = models.DateTimeField(_("updated at"), editable=False)
    version = models.BigIntegerField(_("version"), default=0, editable=False)

    class Meta:
        verbose_name = _("database schedule")
        verbose_name_plural = _("database schedules")
        ordering = ["name"]
        indexes = [models.Index(fields=["version"], name="ddj_entry_version")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (``InvalidScheduleEntry`` if broken), then write with a new version."""
        from .schedule_entries import save_row

        save_row(self, super().save, *args, **kwargs)

    def clean(self) -> None:
        from .schedule_entries import clean_row

        clean_row(self)


class ConsoleDashboard(Job):
    """The dashboard's entry in the admin index and sidebar: a proxy, so no table."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ()  # the page is guarded by view_job


class ConsoleSchedules(Job):
    """The schedules page's entry in the admin index and sidebar (a proxy, no table)."""

    class Meta:
        proxy = True
        verbose_name = _("schedules")
        verbose_name_plural = _("schedules")
        default_permissions = ()
