import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset) the demo's admin user and print its credentials."

    def handle(self, *args, **options):
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = True
        user.email = user.email or f"{username}@example.com"
        user.set_password(password)
        user.save()
        port = os.environ.get("DEMO_PORT", "8000")
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Admin: http://127.0.0.1:{port}/admin/   user: {username}   "
                f"password: {password}\n  Demo page: http://127.0.0.1:{port}/\n"
            )
        )
