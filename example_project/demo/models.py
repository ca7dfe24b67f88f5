from django.db import models


class Signup(models.Model):
    """A newsletter signup; its welcome email is a job enqueued in the same transaction."""

    email = models.EmailField()
    created_at = models.DateTimeField(auto_now_add=True)
    welcomed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.email
