"""The suite's settings: yiweb's own, read as on a developer's machine (DEBUG=1).

yiweb's default is production (DEBUG off), which needs collected static files and a
secret kept beside the database; the tests render pages without collecting anything.
pytest-django reads the settings before any conftest runs, hence this module. The servers
the tests start get DEBUG=1 from `tests.live_server.app_env`; the tests of the production
defaults take it out again.
"""

import os

os.environ["DEBUG"] = "1"

from yiweb.settings import *  # noqa: E402,F403

# tests/test_search.py runs on PostgreSQL too, through this second database, when one
# answers at POSTGRES_ADMIN_URL (CI has one). Only tests that name it get it set up. Its
# test database is named after this run, so that runs at the same time never drop each
# other's.
import dj_database_url  # noqa: E402

from tests.live_server import POSTGRES_ADMIN_URL, postgres_available  # noqa: E402

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" and postgres_available():  # noqa: F405
    DATABASES["postgres"] = dj_database_url.parse(POSTGRES_ADMIN_URL, conn_max_age=0)  # noqa: F405
    # No DEPENDENCIES: Django would otherwise want "default" set up first, even for a run
    # of PostgreSQL tests alone.
    DATABASES["postgres"]["TEST"] = {"NAME": f"test_yiweb_{os.getpid()}", "DEPENDENCIES": []}  # noqa: F405
