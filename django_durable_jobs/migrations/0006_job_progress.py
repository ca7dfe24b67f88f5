from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_durable_jobs", "0005_job_expires_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="progress",
            field=models.JSONField(blank=True, null=True, verbose_name="progress"),
        ),
    ]
