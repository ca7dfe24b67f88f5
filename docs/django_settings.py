"""Minimal Django settings so that autodoc can import the package while building the docs."""

SECRET_KEY = "docs-only"  # noqa: S105 - never serves a request
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_durable_jobs",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TASKS = {"default": {"BACKEND": "django_durable_jobs.tasks_backend.DurableJobsBackend"}}
