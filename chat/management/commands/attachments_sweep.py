"""Remove uploads never sent once they are a day old, all of them now (each server
process's upkeep loop, chat/upkeep.py, also does this hourly, a batch at a time)."""

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
