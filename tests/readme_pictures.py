"""The README's pictures, taken by the browser tests only when asked.

An ordinary test run must leave the working tree as it found it, so a picture is written
only with YIWEB_SCREENSHOTS set: `1` writes into docs/images (the README's), a folder
path writes there instead. The README says which command refreshes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.simulator_server import REPO_ROOT

README_IMAGES = REPO_ROOT / "docs" / "images"


def pictures_folder() -> Path | None:
    setting = os.environ.get("YIWEB_SCREENSHOTS", "").strip()
    if setting in {"", "0"}:
        return None
    return README_IMAGES if setting == "1" else Path(setting)


def readme_picture(page, name: str) -> Path | None:
    """Screenshot `page` as the README picture `name`, if pictures were asked for."""
    folder = pictures_folder()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))
    return folder / name


def readme_pictures_state() -> dict[str, tuple[int, int]]:
    """Each README picture's (size, modification time): what a run must leave unchanged."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(README_IMAGES.glob("*"))}


@pytest.fixture(scope="module", autouse=True)
def readme_pictures_untouched():
    """Running the tests leaves the working tree clean: the README's pictures are written
    only by the documented command (YIWEB_SCREENSHOTS). Browser test modules import it."""
    before = readme_pictures_state()
    yield
    if not os.environ.get("YIWEB_SCREENSHOTS"):
        assert readme_pictures_state() == before, "a browser test rewrote docs/images without YIWEB_SCREENSHOTS"
