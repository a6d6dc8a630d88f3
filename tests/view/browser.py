"""Headless Chromium (Debian's `chromium` and `chromium-driver`, installed by hack/chromium) driven
through selenium, with the browser's console kept so a test can assert it logged no error."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def binaries() -> tuple[str, str]:
    """(chromium, chromedriver): from LORA_CHROMIUM/LORA_CHROMEDRIVER, else hack/chromium."""
    browser, driver = os.environ.get("LORA_CHROMIUM"), os.environ.get("LORA_CHROMEDRIVER")
    if browser and driver:
        return browser, driver
    proc = subprocess.run([str(REPO / "hack" / "chromium")], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"hack/chromium failed: {proc.stderr[-2000:]}"
    browser, driver = proc.stdout.split()[:2]
    return browser, driver


def artifacts() -> Path:
    """Where tests leave files for people (screenshots): $LORA_TEST_ARTIFACTS or .cache/artifacts."""
    path = Path(os.environ.get("LORA_TEST_ARTIFACTS") or REPO / ".cache" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    browser, driver = binaries()
    with tempfile.TemporaryDirectory(prefix="lora-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        chrome.set_page_load_timeout(30)
        try:
            yield chrome
        finally:
            chrome.quit()


def console_errors(chrome: webdriver.Chrome) -> list[str]:
    """Console messages of level SEVERE since the last call (the log is drained as it is read)."""
    return [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
