from django.db import models


class Counter(models.Model):
    """Incremented by jobs: proves how many times a job's body committed."""

    key = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class Note(models.Model):
    """Written next to an enqueue, to test transactions."""

    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text
