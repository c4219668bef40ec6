"""The console in a real browser: Debian's headless Chromium, driven by Selenium, against
a running stack. It signs in, watches jobs move the counters and the chart, sees the pdf
breaker open when a fake broken pdftotext (tests/fakes) fails, replays a dead letter
with the page's button, uploads a document, fits a phone, and logs no console error.
Screenshots (desktop and phone) go under the test's temporary folder."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from daemon.api.openapi import OPERATIONS
from daemon.api.ui.overview import quantile
from devtools.browser import DESKTOP, PHONE, chromium, sign_in
from devtools.stack import Stack, wait_for
from tests.fakes import FOX, PDF, TXT, FakeTools, job, request, submit, wait_all, wait_final

pytestmark = pytest.mark.slow
CONSOLE_ERRORS: list[dict] = []  # every SEVERE browser log entry of the module
TENANT_KEY = "acme-key-" + "y" * 20  # a tenant's key, not an admin key


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> FakeTools:
    tools = FakeTools(tmp_path_factory.mktemp("fake-tools"))
    tools.mode("pdftotext", "pass")
    return tools


@pytest.fixture(scope="module")
def stack(tools: FakeTools) -> Iterator[Stack]:
    stack = Stack(env=tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=2,
                                CIRCUIT_BREAKER_FAILURE_THRESHOLD=3,
                                CIRCUIT_BREAKER_RECOVERY_TIMEOUT=8,
                                CIRCUIT_BREAKER_SUCCESS_THRESHOLD=1))
    stack.env["API_KEY"] = f"{stack.api_key},acme:{TENANT_KEY}"
    stack.start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, stack: Stack):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def console_log(browser) -> Iterator[None]:
    yield
    CONSOLE_ERRORS.extend(e for e in browser.get_log("browser") if e["level"] == "SEVERE")


def shown(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def number(browser, element_id: str) -> int:
    text = shown(browser, element_id)
    return int(text) if text.isdigit() else -1


def see(check, timeout: float, what: str):
    return wait_for(check, timeout, what, interval=0.2)


def unique_pdf() -> bytes:
    """The test PDF made a document of its own (a comment after %%EOF): the result cache
    and the quarantine know documents by their bytes."""
    return PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode()


def pdf_breaker(stack: Stack) -> str:
    breakers = request(stack, "GET", "/v1/console")[1]["breakers"]
    return next(b["state"] for b in breakers if b["family"] == "pdf")


def breaker_badge(browser, family: str) -> tuple[str, str]:
    badge = browser.find_element(By.CSS_SELECTOR, f'#breakers tr[data-family="{family}"] .badge')
    return badge.text, badge.get_attribute("class")


def test_signing_in_keeps_the_key_in_this_tab_only_and_no_inline_script_runs(stack, browser):
    with urllib.request.urlopen(f"{stack.url}/ui", timeout=10) as resp:
        policy = resp.headers["Content-Security-Policy"]
        page = resp.read().decode()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))  # none inline

    browser.get(f"{stack.url}/ui")
    see(lambda: browser.find_element(By.ID, "sign-in").is_displayed(), 10, "the sign-in form")
    assert browser.find_element(By.ID, "board").is_displayed() is False  # no key, no board
    sign_in(browser, stack.url, stack.api_key)

    see(lambda: shown(browser, "link-state") == "Live", 15, "the board to go live")
    assert browser.execute_script(
        "return sessionStorage.getItem('textractd.adminKey')") == stack.api_key
    assert stack.api_key not in browser.current_url
    assert browser.execute_script("return document.cookie") == ""
    assert browser.find_element(By.ID, "sign-in").is_displayed() is False
    # Each worker, with the pid its heartbeat carries.
    see(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")) == 2, 10,
        "two worker rows")
    pids = {int(r.find_elements(By.TAG_NAME, "td")[2].text)
            for r in browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")}
    beats = request(stack, "GET", "/v1/console")[1]["workers"]
    assert pids == {w["pid"] for w in beats}


def test_submitted_jobs_move_the_counters_and_the_chart(stack, browser):
    see(lambda: number(browser, "t-done") >= 0, 10, "the done counter")
    before = number(browser, "t-done")
    assert float(browser.find_element(By.ID, "chart").get_attribute("data-peak")) == 0

    ids = [submit(stack, TXT) for _ in range(12)]
    assert all(j["state"] == "done" for j in wait_all(stack, ids, 60))

    see(lambda: number(browser, "t-done") == before + 12, 10, "done to count 12 more")
    see(lambda: float(browser.find_element(By.ID, "chart").get_attribute("data-peak")) > 0,
        10, "the chart to rise")
    assert re.match(r"[\d.]+ (ms|s) / [\d.]+ (ms|s)", shown(browser, "t-latency"))
    see(lambda: int(browser.find_element(By.ID, "chart").get_attribute("data-points")) >= 2,
        10, "the chart to hold two samples or more")


def test_an_open_breaker_is_shown_in_words_with_when_it_tries_again(stack, tools, browser,
                                                                     screens):
    assert breaker_badge(browser, "pdf") == ("Closed", "badge state-ok")
    tools.mode("pdftotext", "segv")
    dead = wait_final(stack, submit(stack, unique_pdf(), "broken.pdf"), 30)
    assert dead["error"]["code"] == "extractor_failed"  # every attempt failed: a dead letter
    # More failures in a row, until the breaker opens (CIRCUIT_BREAKER_FAILURE_THRESHOLD).
    see(lambda: pdf_breaker(stack) == "open" or not submit(stack, unique_pdf(), "broken.pdf"),
        30, "the pdf breaker to open")

    see(lambda: breaker_badge(browser, "pdf")[0] == "Open", 20, "the pdf breaker shown open")
    assert "state-bad" in breaker_badge(browser, "pdf")[1]
    row = browser.find_element(By.CSS_SELECTOR, '#breakers tr[data-family="pdf"]')
    assert re.search(r"\(in \d", row.text), row.text  # when it will try again
    # The failure, with its code and its request id, and its dead letter.
    see(lambda: dead["request_id"] in shown(browser, "failures"), 10, "the failure listed")
    assert "extractor_failed" in shown(browser, "failures")
    total = request(stack, "GET", "/v1/dead-letters")[1]["total"]
    assert total >= 1
    see(lambda: number(browser, "t-dead") == total, 10, "the dead letters counted")
    browser.save_screenshot(str(screens / "console-desktop.png"))

    tools.mode("pdftotext", "pass")  # the tool is mended: the trial job closes it again
    see(lambda: breaker_badge(browser, "pdf")[0] == "Closed", 30, "the breaker closed")


def test_replaying_a_dead_letter_with_the_button_runs_the_job_to_done(stack, browser):
    page = request(stack, "GET", "/v1/dead-letters")[1]
    letter = page["dead_letters"][0]
    button = f'#dead button[data-action="replay"][data-id="{letter["id"]}"]'
    see(lambda: browser.find_elements(By.CSS_SELECTOR, button), 10, "the replay button")
    browser.find_element(By.CSS_SELECTOR, button).click()
    see(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "the confirmation")
    assert letter["job_id"] in shown(browser, "confirm-text")
    browser.find_element(By.ID, "confirm-ok").click()

    see(lambda: shown(browser, "dead-message") == f"Job {letter['job_id']}: done", 30,
        "the page to report the replayed job done")
    assert job(stack, letter["job_id"])["attempts"] == 1
    see(lambda: number(browser, "t-dead") == page["total"] - 1, 10,
        "the dead letter gone from the count")
    assert not browser.find_elements(By.CSS_SELECTOR, button)


def test_the_quarantine_is_shown_once_the_server_has_its_route(browser):
    # The page found /v1/quarantine in /openapi.json, so it asks for it (every 4th poll).
    see(lambda: re.match(r"\d+ quarantined documents?$",
                         shown(browser, "quarantine").splitlines()[0]), 15,
        "the quarantine panel's count")


def test_the_upload_box_shows_the_text_and_the_job(browser):
    browser.find_element(By.ID, "file").send_keys(str(TXT))
    see(lambda: '"state": "done"' in shown(browser, "upload-job"), 30, "the job JSON")
    assert FOX in re.sub(r"\W", "", shown(browser, "upload-text")).lower()
    shown_job = json.loads(shown(browser, "upload-job"))
    assert shown_job["filename"] == TXT.name and shown_job["format"] == "txt"


def test_the_page_fits_a_phone_and_logged_no_console_error(browser, screens):
    browser.set_window_size(*PHONE)
    see(lambda: browser.execute_script("return window.innerWidth") <= PHONE[0], 5,
        "the phone-sized viewport")
    see(lambda: browser.execute_script(
        "var c = document.getElementById('chart');"
        "return c.width === Math.round(c.clientWidth * (window.devicePixelRatio || 1))"),
        5, "the chart redrawn at the phone's width")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone"
    assert browser.find_element(By.ID, "chart").size["width"] <= PHONE[0]
    browser.save_screenshot(str(screens / "console-phone.png"))
    CONSOLE_ERRORS.extend(e for e in browser.get_log("browser") if e["level"] == "SEVERE")
    assert CONSOLE_ERRORS == []
    print(f"\nscreenshots: {screens / 'console-desktop.png'}, {screens / 'console-phone.png'}")


def test_the_api_reference_renders_every_operation_from_the_package(stack, browser):
    browser.set_window_size(*DESKTOP)
    browser.get(f"{stack.url}/docs")
    summaries = sorted(op["summary"] for op in OPERATIONS.values())
    headings = "return Array.from(document.querySelectorAll('h2'), h => h.textContent.trim())"
    see(lambda: set(summaries) <= set(browser.execute_script(headings)), 30,
        "Redoc to render every operation's summary")
    scripts = [e.get_attribute("src") for e in browser.find_elements(By.TAG_NAME, "script")]
    assert scripts and all(src.startswith(f"{stack.url}/ui/static/") for src in scripts if src)
    # Redoc's own "API docs by Redocly" badge points at its CDN: the policy blocks it, and
    # that is the only complaint the page may log.
    logged = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("cdn.redoc.ly" in e["message"] for e in logged), logged


def test_a_key_that_is_not_an_admin_key_is_refused_with_the_reason(stack, browser):
    browser.get(f"{stack.url}/ui")  # the admin key is still in this tab's sessionStorage
    see(lambda: shown(browser, "link-state") == "Live", 15, "the board live again")
    browser.find_element(By.ID, "sign-out").click()
    assert browser.execute_script("return sessionStorage.length") == 0
    sign_in(browser, stack.url, TENANT_KEY)

    see(lambda: "admin key" in shown(browser, "sign-in-error"), 10, "the refusal's reason")
    assert browser.find_element(By.ID, "board").is_displayed() is False
    assert browser.execute_script("return sessionStorage.length") == 0  # not kept
    browser.get_log("browser")  # the refused call's 403 is an expected console line


def test_a_redis_outage_is_shown_in_words_and_the_page_recovers(stack, browser):
    sign_in(browser, stack.url, stack.api_key)
    see(lambda: shown(browser, "link-state") == "Live", 15, "the board live again")
    stack.supervisorctl("stop", "redis")
    try:
        see(lambda: shown(browser, "link-state") == "Redis unreachable", 20,
            "the outage shown")
        badge = browser.find_element(By.ID, "link-state").get_attribute("class")
        assert "state-bad" in badge
        assert "Redis unreachable" in shown(browser, "workers")
    finally:
        stack.supervisorctl("start", "redis")
    see(lambda: shown(browser, "link-state") == "Live", 30, "the board live after it")
    see(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#workers .badge")) == 2, 30,
        "both workers back")
    browser.get_log("browser")  # the 503s of the outage are expected console lines


def test_latency_quantiles_interpolate_inside_their_bucket():
    buckets = {"0.1": 50, "0.5": 90, "1": 100, "+Inf": 100}
    assert quantile(buckets, 0.5) == 0.1
    assert quantile(buckets, 0.7) == pytest.approx(0.3)
    assert quantile(buckets, 0.95) == pytest.approx(0.75)
    assert quantile({"0.1": 0, "+Inf": 0}, 0.5) is None
    assert quantile({"0.1": 0, "+Inf": 4}, 0.5) == 0.1  # past the last bound
