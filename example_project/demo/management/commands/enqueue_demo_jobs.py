from django.core.management.base import BaseCommand

from demo.services import enqueue_demo_jobs


class Command(BaseCommand):
    help = "Enqueue one of each demo job, in one transaction."

    def handle(self, *args, **options):
        count = enqueue_demo_jobs()
        self.stdout.write(self.style.SUCCESS(f"Enqueued {count} demo jobs."))
