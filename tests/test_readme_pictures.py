"""README pictures are written only when asked for (tests/readme_pictures.py)."""

from __future__ import annotations

from tests.readme_pictures import README_IMAGES, readme_picture


class FakePage:
    def __init__(self):
        self.paths: list[str] = []

    def screenshot(self, *, path: str) -> None:
        self.paths.append(path)


def test_an_ordinary_run_takes_no_picture(monkeypatch):
    monkeypatch.delenv("YIWEB_SCREENSHOTS", raising=False)
    page = FakePage()
    assert readme_picture(page, "chat.png") is None
    monkeypatch.setenv("YIWEB_SCREENSHOTS", "0")
    assert readme_picture(page, "chat.png") is None
    assert page.paths == []


def test_yiweb_screenshots_1_writes_the_readmes_pictures(monkeypatch):
    monkeypatch.setenv("YIWEB_SCREENSHOTS", "1")
    page = FakePage()
    assert readme_picture(page, "chat.png") == README_IMAGES / "chat.png"
    assert page.paths == [str(README_IMAGES / "chat.png")]


def test_yiweb_screenshots_can_name_another_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("YIWEB_SCREENSHOTS", str(tmp_path / "pictures"))
    page = FakePage()
    assert readme_picture(page, "chat.png") == tmp_path / "pictures" / "chat.png"
    assert (tmp_path / "pictures").is_dir() and page.paths == [str(tmp_path / "pictures" / "chat.png")]
