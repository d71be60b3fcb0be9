"""The model picker in a real browser: the Yi models with the reference's facts, another
provider's models by name alone, and the refresh button that asks the provider again."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.live_server import app_env, manage, running_app, running_app_and_simulator, sqlite_database
from tests.openai_server import running_openai_server
from tests.test_browser import CHROMIUM, browser, page, sign_up  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)

OPTIONS = "sel => [...sel.options].map(o => o.textContent)"


@contextlib.contextmanager
def app_on_another_provider(api_key: str) -> Iterator[tuple[str, str]]:
    """yiweb whose server key is for tests/openai_server.py: (yiweb's URL, the provider's)."""
    with running_openai_server() as provider_url, sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=provider_url, YI_API_KEY=api_key)
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, _):
            yield base, provider_url


def test_the_picker_shows_the_yi_models_window_price_images_and_tools(page):  # noqa: F811
    with running_app_and_simulator(delta_ms=1) as (base, _, _):
        sign_up(page, base, "frieda")
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        assert page.eval_on_selector("#model-select", OPTIONS) == [
            "yi-large · 32K · $3/M",
            "yi-large-turbo · 4K · $0.19/M",
            "yi-large-fc · 32K · $3/M · tools",
            "yi-vision · 16K · $0.19/M · images",
        ]
        vision = page.locator("#model-select option[value=yi-vision]")
        assert vision.get_attribute("title") == (
            "yi-vision (01.ai): a 16K-token context window; takes images; "
            "$0.19 per million input tokens, $0.19 per million output tokens"
        )
    assert page.problems == []


def test_refresh_lists_a_model_the_provider_added_since_the_page_was_loaded(page):  # noqa: F811
    with app_on_another_provider("sk-browser-0001") as (base, provider_url):
        sign_up(page, base, "gustav")
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        # Another provider's models: by name, nothing claimed about them.
        assert page.eval_on_selector("#model-select", OPTIONS) == ["llama3.2", "qwen2.5-coder"]

        httpx.post(provider_url.removesuffix("/v1") + "/control/models",
                   json={"api_key": "sk-browser-0001", "id": "ft:llama3.2:team", "owned_by": "team"}).raise_for_status()
        page.reload()
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        assert page.eval_on_selector("#model-select", OPTIONS) == ["llama3.2", "qwen2.5-coder"]  # kept a while

        page.get_by_role("button", name="Refresh the model list").click()
        page.wait_for_function("() => document.querySelector('#model-select').options.length === 3")
        assert page.eval_on_selector("#model-select", OPTIONS) == ["llama3.2", "qwen2.5-coder", "ft:llama3.2:team"]
    assert page.problems == []
