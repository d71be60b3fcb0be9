"""`manage.py start`: migrate, collect static files, then serve the app with Daphne (and the
offline simulator if needed).

The README's first command ends here, with production settings unless DEBUG=1: the
secret key was made beside the database when the settings loaded (yiweb/secret_key.py),
and the static files are collected here, since WhiteNoise serves hashed files only from
STATIC_ROOT. With no YI_API_KEY and no YI_API_BASE, the app would have nothing to talk to
on a machine without network, so this also runs the Yi API simulator (chat/simulator.py)
on SIMULATOR_PORT and the app points at it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Apply migrations and serve yiweb with Daphne (plus the offline Yi API simulator when no key is set)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
        parser.add_argument("--port", type=int, default=8000, help="port to listen on")

    def handle(self, *args, host: str, port: int, **options):
        # Before anything starts: Daphne reports a port in use only in its log, and goes on
        # (or exits 0), so the app would announce an address it does not serve, or send
        # every answer to whatever else listens on the simulator's port.
        _port_free_or_exit(host, port, "--port N")
        if settings.YI_SIMULATOR:
            _port_free_or_exit("127.0.0.1", settings.SIMULATOR_PORT, "SIMULATOR_PORT=N", what="the offline simulator's")
        call_command("migrate", interactive=False, verbosity=1)
        if settings.DEBUG:
            self.stdout.write("Development settings (DEBUG=1): Django's debug pages, static files from static/.")
        else:
            # About a second; files that did not change are not copied again.
            call_command("collectstatic", interactive=False, verbosity=0)
            self.stdout.write("Production settings (DEBUG off; DEBUG=1 for development).")
            if settings.SECRET_KEY_FILE:
                self.stdout.write(f"The secret key is kept in {settings.SECRET_KEY_FILE}.")
        children = []
        if settings.YI_SIMULATOR:
            self.stdout.write(
                f"No YI_API_KEY set: answers come from the offline simulator at {settings.YI_API_BASE}. "
                "Set YI_API_KEY to talk to the Yi API."
            )
            children.append(_daphne("chat.simulator:app", "127.0.0.1", settings.SIMULATOR_PORT))
        self.stdout.write(f"yiweb is at http://{host}:{port}/ (Ctrl+C stops it)")
        app = _daphne("yiweb.asgi:application", host, port)
        # `docker stop` and service managers send SIGTERM: stop the servers too, not only on Ctrl+C.
        signal.signal(signal.SIGTERM, lambda *_: app.terminate())
        try:
            app.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for process in [app, *children]:
                process.terminate()
            for process in [app, *children]:
                process.wait(timeout=10)


def _port_free_or_exit(host: str, port: int, remedy: str, *, what: str = "yiweb's") -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CommandError(
                f"Port {port} ({what}) on {host} cannot be used: {error.strerror}. Stop what uses it, "
                f"or choose another port with {remedy}."
            ) from None


def _daphne(application: str, host: str, port: int) -> subprocess.Popen:
    # yiweb.server is Daphne's own command line on uvloop.
    return subprocess.Popen([sys.executable, "-m", "yiweb.server", "-b", host, "-p", str(port), application])
