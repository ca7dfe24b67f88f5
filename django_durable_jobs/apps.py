from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DurableJobsConfig(AppConfig):
    name = "django_durable_jobs"
    label = "django_durable_jobs"
    verbose_name = _("Durable jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import (
            checks,  # noqa: F401 - registers the system checks
            inline,
            tasks_checks,
        )

        inline.install()  # immediate mode, if the settings ask for it
        tasks_checks.register_django_tasks_checks()

        # Import <app>.jobs for every installed app, so every @job is registered
        # before a worker looks a name up.
        autodiscover_modules("jobs")
