"""A job module that is not autodiscovered; the registry imports it by name."""

from django_durable_jobs import job


@job
def lazy():
    return "found"
