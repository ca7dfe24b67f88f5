"""``bench_shape_row``: one small row per S1 job; created and truncated by driver.py."""

from django.db import models


class ShapeRow(models.Model):
    id = models.BigAutoField(primary_key=True)
    job_ref = models.IntegerField()
    payload = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        managed = False  # driver.py creates it the same way in every system's database
        db_table = "bench_shape_row"

    def __str__(self) -> str:
        return f"row {self.job_ref}"
