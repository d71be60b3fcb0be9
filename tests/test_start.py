"""`manage.py start`, the README's first command: offline defaults, end to end, and a clean stop."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.live_server import Socket, app_env, signup, sqlite_database
from tests.simulator_server import REPO_ROOT, free_port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


async def test_start_without_a_key_chats_through_the_offline_simulator_and_stops_on_sigterm(tmp_path):
    port, simulator_port = free_port(), free_port()
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, SIMULATOR_PORT=str(simulator_port), SIMULATOR_DELTA_MS="1")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "start", "--port", str(port)], cwd=REPO_ROOT, env=env,
            stdout=(tmp_path / "out.log").open("w"), stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: port_open(port) and port_open(simulator_port))
            session = signup(base, "owner")
            page = httpx.get(f"{base}/", cookies={"sessionid": session}).text
            assert "Answers come from the offline simulator" in page

            ws = await Socket.open(base, session)
            await ws.send({"type": "send", "conversation_id": None, "text": "Hello offline", "model": "yi-large"})
            done = (await ws.until(lambda f: f["type"] == "done"))[-1]
            await ws.close()
            assert done["message"]["status"] == "complete"
            assert "Hello offline" in done["message"]["content"]
            assert "offline simulator" in done["message"]["content"]

            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            wait_until(lambda: not port_open(port) and not port_open(simulator_port), timeout=10)
        finally:
            if process.poll() is None:
                process.kill()


def test_the_readme_command_runs_production_settings_and_a_new_user_gets_in(tmp_path):
    """Nothing configured, as after a fresh clone: production settings, a secret key made
    and kept beside the database, the app's own 404 page, hashed static files, cookies a
    browser keeps over plain http://, and from / to sign-up in one link."""
    import re
    import stat

    from tests.first_run import readme_start

    key_file = tmp_path / "db.sqlite3.secret-key"
    with readme_start(tmp_path) as (base, log):
        with httpx.Client(base_url=base, timeout=10) as http:
            to_sign_in = http.get("/")
            assert to_sign_in.status_code == 302 and to_sign_in.headers["location"] == "/accounts/login/?next=/"
            sign_in = http.get("/accounts/login/?next=/")
            assert 'href="/accounts/signup/"' in sign_in.text
            assert "secure" not in sign_in.headers["set-cookie"].lower()  # the CSRF cookie comes back over http://

            missing = http.get("/no/such/page/")
            assert missing.status_code == 404 and "Page not found" in missing.text
            assert "URLconf" not in missing.text and "DEBUG" not in missing.text

            stylesheet = re.search(r'href="(/static/site/site\.[0-9a-f]{12}\.css)"', sign_in.text).group(1)
            served = http.get(stylesheet)
            assert served.status_code == 200 and "immutable" in served.headers["cache-control"]

            signed_up = http.post("/accounts/signup/", data={
                "username": "owner", "password1": "correct horse battery staple",
                "password2": "correct horse battery staple", "csrfmiddlewaretoken": http.cookies["csrftoken"]},
                follow_redirects=True)
            assert "you are this server&#x27;s administrator" in signed_up.text
            assert 'href="/admin/"' in signed_up.text and http.get("/admin/").status_code == 200
            session = http.cookies["sessionid"]
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    output = log.read_text()
    assert "Production settings (DEBUG off; DEBUG=1 for development)." in output
    assert f"The secret key is kept in {key_file}." in output and key not in output

    # Started again, it keeps its key: the session signed in before the restart still is.
    with readme_start(tmp_path) as (base, _):
        assert key_file.read_text().strip() == key
        assert httpx.get(f"{base}/", cookies={"sessionid": session}).status_code == 200


def test_start_on_a_port_in_use_says_which_and_exits_non_zero(tmp_path):
    """Before: it printed "yiweb is at …", Daphne logged the failure, and the command exited
    0; with the simulator's port taken, the app sent every answer to whatever listened there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for args, extra, says in [
            (["--port", str(busy)], {}, f"Port {busy} (yiweb's) on 127.0.0.1 cannot be used"),
            (["--port", str(free_port())], {"SIMULATOR_PORT": str(busy)}, f"Port {busy} (the offline simulator's)"),
        ]:
            with sqlite_database() as database_url:
                env = app_env(DATABASE_URL=database_url, **extra)
                result = subprocess.run([sys.executable, "manage.py", "start", *args], cwd=REPO_ROOT, env=env,
                                        capture_output=True, text=True, timeout=60)
            assert result.returncode != 0
            assert says in result.stderr and "yiweb is at" not in result.stdout


def test_ctrl_c_after_an_image_upload_stops_at_once_without_a_traceback(tmp_path):
    """Ctrl+C in a terminal sends SIGINT to the whole process group, the image workers
    (chat/attachments.py) included: each printed `Process SpawnProcess-1: Traceback …
    KeyboardInterrupt` over the clean stop. They leave the stop to the server that owns them."""
    import os

    from tests.first_run import START_TIMEOUT, first_run_env
    from tests.test_image_sends import drawing

    port = free_port()
    log_path = tmp_path / "start.log"
    with log_path.open("w") as log:
        # A session of its own, as a terminal gives a command its own process group.
        process = subprocess.Popen([sys.executable, "manage.py", "start", "--port", str(port)], cwd=REPO_ROOT,
                                   env=first_run_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until(lambda: port_open(port), timeout=START_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            http.get("/accounts/signup/")
            http.post("/accounts/signup/", data={
                "username": "owner", "password1": "correct horse battery staple",
                "password2": "correct horse battery staple", "csrfmiddlewaretoken": http.cookies["csrftoken"]})
            uploaded = http.post("/attachments/", content=drawing(), headers={
                "Content-Type": "application/octet-stream", "X-File-Name": "blue.png",
                "X-CSRFToken": http.cookies["csrftoken"], "Origin": base})
            assert uploaded.status_code == 201, uploaded.text
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=15) == 0
        wait_until(lambda: not port_open(port), timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # an image worker left behind
    output = log_path.read_text()
    assert "yiweb is at" in output and "Traceback" not in output and "KeyboardInterrupt" not in output, output
