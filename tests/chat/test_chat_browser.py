"""The chat page in headless Chromium (Debian's package, driven over the DevTools protocol): load
the page, send a request, click like on a card, and check that the next list changes; a screenshot
is saved ($LLMREC_ARTIFACTS or the test's tmp folder)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chat.conftest import chat_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    r = subprocess.run(["bash", str(ROOT / "scripts/install_chromium.sh")], capture_output=True, text=True,
                       check=False)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(f"chromium is not installed and scripts/install_chromium.sh failed: {r.stderr.strip()[-300:]}")
    return found


def test_page_request_like_changes_the_list(chat_service, tmp_path):
    from tests.chat.cdp import Browser

    binary = chromium()
    srv, _ = chat_server(chat_service, tmp_path / "chat.sqlite")
    with srv:
        browser = Browser(binary, str(tmp_path / "profile"))
        try:
            browser.open(srv.url + "/")
            browser.type("#user", "7")
            browser.type("#text", "a comedy from the 90s, no horror")
            browser.click("#send")
            browser.wait("document.body.dataset.turn === '1'")
            first = browser.eval("[...document.querySelectorAll('.card')].map(c => c.dataset.itemId)")
            reply = browser.eval("document.getElementById('reply').textContent")
            assert len(first) == 4 and reply.startswith("Here are 4 movies")
            browser.click(".card:nth-child(2) .like")
            browser.wait("document.body.dataset.turn === '2'")
            second = browser.eval("[...document.querySelectorAll('.card')].map(c => c.dataset.itemId)")
            assert second and not set(second) & set(first)
            assert browser.eval("document.getElementById('status').textContent") == ""
            out = Path(os.environ.get("LLMREC_ARTIFACTS", tmp_path))
            out.mkdir(parents=True, exist_ok=True)
            (out / "chat_page.png").write_bytes(browser.screenshot())
            print(f"\nscreenshot: {out / 'chat_page.png'}")
        finally:
            browser.close()
    sessions = srv.server.config.app.state.chat.store.count_turns()
    assert list(sessions.values()) == [2]
