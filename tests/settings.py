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
