"""The chat page of ``quantonium serve`` in a real headless browser.

Debian's ``chromium`` driven by Selenium through Debian's ``chromium-driver``
(``/usr/bin/chromedriver``, given explicitly: Selenium Manager is never run,
and ``SE_OFFLINE`` forbids it to download anything anyway). The page sends a
message, the reply streams in, the Stop button stops a long reply, the status
panel shows the model's figures; a screenshot is kept as a test artefact and
its path printed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from quantonium.chat.registry import Registry  # noqa: E402
from quantonium.chat.server import ModelPool, ServerConfig, ServerThread  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
    pytest.mark.skipif(not (shutil.which("chromium") and Path("/usr/bin/chromedriver").is_file()),
                       reason="Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)"),
]


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,820",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_streams_a_reply_and_shows_the_figures(chat_models, browser, tmp_path):
    reg = Registry.from_args([str(chat_models[k]) for k in ("tiny", "wide", "encoder")], None)
    pool = ModelPool(reg, ServerConfig(), report=lambda m: None).start()
    with ServerThread(pool) as url:
        b = browser
        wait = WebDriverWait(b, 120, poll_frequency=0.05)
        b.get(url + "/")
        wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 4)
        options = Select(b.find_element(By.ID, "model")).options
        assert options[0].text == "auto → tiny" and options[1].text.startswith("tiny (")
        assert not options[3].is_enabled() and options[3].text.endswith("cannot chat")
        wait.until(lambda d: "tiny (auto)" in d.find_element(By.ID, "status-model").text)

        # a message: the greedy reply streams in and equals the API's answer to the same request
        mt = b.find_element(By.ID, "max-tokens")
        mt.clear()
        mt.send_keys("40")
        b.find_element(By.ID, "prompt").send_keys("hello there")
        b.find_element(By.ID, "send").click()
        reply = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant[data-done='true']"))
        ref = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "max_tokens": 40, "temperature": 0,
                         "messages": [{"role": "user", "content": "hello there"}]}, timeout=60).json()
        text = reply.find_element(By.CSS_SELECTOR, ".text").text
        assert text == ref["choices"][0]["message"]["content"].strip() and text
        assert int(reply.get_attribute("data-chunks")) > 1  # arrived in many server-sent events
        meta = reply.find_element(By.CSS_SELECTOR, ".meta").text
        assert meta.startswith("tiny · 40 tokens · ") and "tok/s" in meta and "first token" in meta and "finish: length" in meta
        wait.until(lambda d: "2 (0 stopped" in d.find_element(By.ID, "status-model").text)  # page + reference request
        panel = b.find_element(By.ID, "status-model").text
        assert "not evaluated" in panel and "vs source" in panel and "float32" in panel
        assert "n/a last" not in panel  # tokens/s and first token are measured figures
        assert "RSS" in b.find_element(By.ID, "status-server").text
        shot = tmp_path / "chat_page.png"
        assert b.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"\nscreenshot of the chat page: {shot}")

        # a long reply: text is visible before it ends, and Stop ends it (the server cancels the generation)
        # every forward pass takes at least 5 ms: 1500 tokens last 7.5 s or more on any machine (no race with Stop)
        slow = pool.loaded["tiny"].model.register_forward_pre_hook(lambda *_: time.sleep(0.005))
        mt.clear()
        mt.send_keys("1500")
        b.find_element(By.ID, "prompt").send_keys("the of and")
        b.find_element(By.ID, "send").click()
        second = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[1:])[0]
        wait.until(lambda d: len(second.find_element(By.CSS_SELECTOR, ".text").text.split()) >= 10)
        assert second.get_attribute("data-done") == "false"
        b.find_element(By.ID, "stop").click()
        wait.until(lambda d: second.get_attribute("data-done") == "true")
        assert second.find_element(By.CSS_SELECTOR, ".meta").text == "stopped"
        end = time.monotonic() + 60
        while time.monotonic() < end:
            st = next(m for m in httpx.get(url + "/status").json()["models"] if m["name"] == "tiny")
            if st["cancelled"] == 1 and st["active"] == 0:
                break
            time.sleep(0.05)
        assert st["cancelled"] == 1 and st["active"] == 0
        slow.remove()
        shot2 = tmp_path / "chat_page_stopped.png"
        b.save_screenshot(str(shot2))
        print(f"screenshot after Stop: {shot2}")
        keep = os.environ.get("QN_SCREENSHOT_DIR")  # optional: copy the artefacts somewhere lasting
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, keep)
            shutil.copy(shot2, keep)
