"""Remove uploads never sent once they are a day old (the upload view also does this
hourly; this is for a deployment that wants it on a schedule)."""

from django.core.management.base import BaseCommand

from chat.attachments import SWEEP_BATCH, attachments_sweep


class Command(BaseCommand):
    help = "Delete images uploaded but never sent that are more than a day old, and their files."

    def handle(self, *args, **options) -> None:
        total = 0
        while removed := attachments_sweep():
            total += removed
            if removed < SWEEP_BATCH:
                break
        self.stdout.write(f"Removed {total} unsent uploads.")
