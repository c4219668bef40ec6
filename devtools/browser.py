"""Headless Chromium (Debian's, driven by Selenium through Debian's chromedriver) for the
console's browser tests and for scripts/screenshot, which regenerates docs/console.png.

    python -m devtools.browser docs/console.png   a stack with some traffic, one screenshot

Nothing is downloaded: the browser and its driver are the apt packages in
conf/apt-packages-test.txt, and Selenium is pointed at both by path.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
DESKTOP = (1280, 800)
PHONE = (390, 844)


def chromium(profile: Path, size: tuple[int, int] = DESKTOP) -> webdriver.Chrome:
    """A fresh headless Chromium with its own profile folder, keeping the console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_window_size(*size)
    return driver


def sign_in(driver: webdriver.Chrome, url: str, key: str) -> None:
    """Open the console and sign in with `key` through its form."""
    driver.get(f"{url}/ui")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()


def _wait(check, timeout: float, what: str) -> None:
    from devtools.stack import wait_for
    wait_for(check, timeout, what, interval=0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.browser",
        description="Start a stack, give it some traffic (jobs, a dead letter, an open "
                    "breaker), and save a 1280x800 screenshot of the console.")
    parser.add_argument("output", type=Path, help="the PNG to write, e.g. docs/console.png")
    args = parser.parse_args(argv)
    # The fakes and the stack are the tests' own: this is a developer's tool.
    from devtools.stack import Stack
    from tests.fakes import FOX, PDF, TXT, FakeTools, request, submit, wait_final

    work = Path(tempfile.mkdtemp(prefix="txd-shot-"))
    tools = FakeTools(work / "fake-tools")
    stack = Stack(env=tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=2,
                                CIRCUIT_BREAKER_FAILURE_THRESHOLD=3,
                                CIRCUIT_BREAKER_RECOVERY_TIMEOUT=300)).start()
    driver = None
    try:
        driver = chromium(work / "profile")
        sign_in(driver, stack.url, stack.api_key)
        for _ in range(3):  # a few minutes of traffic in a few seconds: good jobs first
            for job_id in [submit(stack, TXT) for _ in range(8)]:
                assert FOX in wait_final(stack, job_id, 30)["text"].replace(" ", "").lower()
            time.sleep(2.1)  # a sample of the jobs/s ring between rounds
        tools.mode("pdftotext", "segv")  # then the pdf tool breaks: failures, an open breaker

        def pdf_open() -> bool:
            breakers = request(stack, "GET", "/v1/console")[1]["breakers"]
            if any(b["family"] == "pdf" and b["state"] == "open" for b in breakers):
                return True
            # documents of their own: the result cache knows a document by its bytes
            wait_final(stack, submit(stack, PDF.read_bytes() + f"\n% {uuid.uuid4()}\n"
                                     .encode(), "broken.pdf"), 30)
            return False

        _wait(pdf_open, 90, "the pdf breaker to open")
        _wait(lambda: "Open" in driver.find_element(By.ID, "breakers").text, 10,
              "the page to show it")
        # The whole page, 1280 wide: the window grows to its height (headless has no
        # screen to stop it), then one more poll so every panel shows the same moment.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(DESKTOP[0], height)
        before = driver.find_element(By.ID, "updated").text
        _wait(lambda: driver.find_element(By.ID, "updated").text != before, 10, "a poll")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.output))
        print(f"wrote {args.output}")
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
