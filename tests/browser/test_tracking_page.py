"""The customer's tracking page (`/t/{token}`): the HTML as served, and the page in a real headless Chromium on
a phone-sized screen, against the app served by granian on a real port.

Chromium and its driver are Debian packages that `infra/bootstrap.sh` installs; without them these tests
fail (they do not skip), naming the packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from backend.app import create_app
from backend.settings import REPO_ROOT, Settings, TrackingSettings
from tests.api.jobs_helpers import SITE, north, post_job, technician
from tests.api.test_tracking import assigned_job, ping, send_pings, step
from tests.helpers import ADMIN_TOKEN, PROJECT_ID, new_org

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
PHONE = {"width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": True}


# --- the HTML as served (no browser) ----------------------------------------------------------------------


async def page_of(client: AsyncTestClient, token: str) -> httpx.Response:
    response = await client.get(f"/t/{token}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response


async def test_the_served_page_states_status_name_and_eta_without_script(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")
    await send_pings(client, auth, ping(north(3), speed_mps=12.0))

    html = (await page_of(client, job["tracking_token"])).text

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Ana is on the way" in html
    assert "Arriving in about 5 min" in html  # ~325 s
    assert f"{north(3)['lat']:.5f}, {north(3)['lon']:.5f}" in html
    assert "Albrecht" not in html


async def test_the_page_follows_the_job_from_posted_to_done(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    token = job["tracking_token"]
    assert "Ana will come to you" in (await page_of(client, token)).text

    await step(client, auth, job["id"], "en-route")
    await step(client, auth, job["id"], "check-in", {**SITE, "accuracy_m": 8})
    assert "Ana has arrived" in (await page_of(client, token)).text

    await step(client, auth, job["id"], "complete", {"notes": "done"})
    html = (await page_of(client, token)).text
    assert "Your visit is complete" in html
    assert '<p id="position" class="position" hidden>' in html  # where they went next is not the customer's

    unassigned = await post_job(client, org, auto=False)
    assert "We are finding a technician for you" in (await page_of(client, unassigned["tracking_token"])).text


async def test_every_value_on_the_page_is_escaped(client: AsyncTestClient) -> None:
    org = await new_org(client)
    technician_id, auth = await technician(client, org, "mallory", km=1, name="<img/src=x/onerror=alert(1)> Albrecht")
    job = await post_job(client, org, auto=False)
    response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": technician_id}, headers=org)
    assert response.status_code == 200, response.text
    await step(client, auth, job["id"], "en-route")

    html = (await page_of(client, job["tracking_token"])).text

    assert "<img/src=x" not in html
    assert "&lt;img/src=x/onerror=alert(1)&gt; is on the way" in html


async def test_the_page_keeps_the_token_private_and_allows_only_its_own_script(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job = await post_job(client, org, auto=False)

    response = await page_of(client, job["tracking_token"])

    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    policy = dict(
        part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";") if part.strip()
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"].startswith("'sha256-") and "unsafe" not in policy["script-src"]
    assert policy["connect-src"] == "'self'"
    assert "src=" not in response.text.split("<body>")[1].split("<script")[0]  # nothing external in the markup


async def test_an_unknown_or_closed_link_gets_a_404_page(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    job, _ = await assigned_job(client, org)

    response = await client.get("/t/not-a-real-token")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "This tracking link does not exist or has closed." in response.text

    response = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "no longer needed"}, headers=org)
    assert response.status_code == 200
    db.execute("UPDATE jobs SET cancelled_at = now() - interval '25 hours' WHERE id = %s", (job["id"],))
    assert (await client.get(f"/t/{job['tracking_token']}")).status_code == 404


async def test_the_page_shares_the_links_rate_limit(settings: Settings) -> None:
    tighter = msgspec.structs.replace(settings, tracking=TrackingSettings(rate_limit_per_minute=2))
    async with AsyncTestClient(create_app(tighter)) as client:
        await client.get("/v1/track/whatever")
        assert (await client.get("/t/whatever")).status_code == 404
        limited = await client.get("/t/whatever")
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["referrer-policy"] == "no-referrer"


# --- in a real browser ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(migrated: str, db: psycopg.Connection) -> Iterator[str]:
    """The app under granian on a real port (as `truckroll serve` runs it)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": migrated,
        "TRUCKROLL_ENV": "test",
        "TRUCKROLL_PUSH": "log",
        "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
    }
    granian = Path(sys.executable).parent / "granian"
    process = subprocess.Popen(
        [str(granian), "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", "1", "--no-log", "backend.app:app_from_env"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"granian did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


def _missing_browser() -> str | None:
    missing = [
        package
        for package, binary in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
        if not binary.exists()
    ]
    if missing:
        return (
            f"{' and '.join(str(b) for b in (CHROMIUM, CHROMEDRIVER) if not b.exists())} missing: "
            f"run infra/bootstrap.sh, or as root: apt-get install -y {' '.join(missing)}"
        )
    return None


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium emulating a 360 × 740 phone."""
    if problem := _missing_browser():
        pytest.fail(problem)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=subprocess.DEVNULL), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        yield driver
    finally:
        driver.quit()


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').innerText")


def wait_for(driver: WebDriver, what: str, predicate, within: float = 5.0):
    return WebDriverWait(driver, within, poll_frequency=0.1).until(lambda d: predicate(d), message=what)


def csp_violations(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


async def test_on_a_phone_the_page_shows_the_eta_and_follows_a_ping_without_reloading(
    api: httpx.AsyncClient, server: str, browser: WebDriver
) -> None:
    org = await new_org(api)
    job, auth = await assigned_job(api, org, km=3)
    await step(api, auth, job["id"], "en-route")
    await send_pings(api, auth, ping(north(3), speed_mps=12.0))

    browser.get(f"{server}/t/{job['tracking_token']}")

    assert text_of(browser, "headline") == "Ana is on the way"
    assert text_of(browser, "eta-text") == "Arriving in about 5 min"  # ~325 s
    assert f"{north(3)['lat']:.5f}" in text_of(browser, "position-text")
    wait_for(browser, "the live socket to open", lambda d: text_of(d, "live") == "Updates live.")
    assert browser.execute_script("return window.innerWidth") == 360
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    # The map is drawn from the socket's first message, whether its tiles load or not (here they cannot).
    wait_for(browser, "the map", lambda d: d.execute_script("return !document.getElementById('map').hidden"))
    browser.execute_script("window.stillTheSamePage = true")

    await send_pings(api, auth, ping(north(1), speed_mps=12.0))

    eta = wait_for(
        browser,
        "the ETA to follow the ping",
        lambda d: (t := text_of(d, "eta-text")) != "Arriving in about 5 min" and t,
    )
    assert eta == "Arriving in about 2 min"  # ~108 s
    assert f"{north(1)['lat']:.5f}" in text_of(browser, "position-text")
    assert browser.execute_script("return window.stillTheSamePage === true")  # no reload

    await step(api, auth, job["id"], "check-in", {**SITE, "accuracy_m": 8})
    wait_for(browser, "arrival", lambda d: text_of(d, "headline") == "Ana has arrived")
    assert text_of(browser, "eta-text") == "Arrived"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert csp_violations(browser) == []


async def test_without_javascript_the_page_still_states_status_and_eta(
    api: httpx.AsyncClient, server: str, browser: WebDriver
) -> None:
    org = await new_org(api)
    job, auth = await assigned_job(api, org, km=2)
    await step(api, auth, job["id"], "en-route")
    await send_pings(api, auth, ping(north(2), speed_mps=0.0))
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})

    browser.get(f"{server}/t/{job['tracking_token']}")

    assert text_of_static(browser, "headline") == "Ana is on the way"
    assert text_of_static(browser, "eta-text") == "Arriving in about 5 min"  # ~312 s at city speed
    assert text_of_static(browser, "eta-clock").endswith("UTC)")
    assert text_of_static(browser, "live").startswith("As of")  # the script did not run
    assert "Reload the page" in browser.find_element("tag name", "body").text


def text_of_static(driver: WebDriver, element_id: str) -> str:
    # With scripts disabled, execute_script does not run either: read through WebDriver's own element API.
    return driver.find_element("id", element_id).text


async def test_a_link_that_closes_while_open_says_so(api: httpx.AsyncClient, server: str, browser: WebDriver) -> None:
    org = await new_org(api)
    job = await post_job(api, org, auto=False)
    browser.get(f"{server}/t/{job['tracking_token']}")
    wait_for(browser, "the live socket to open", lambda d: text_of(d, "live") == "Updates live.")

    response = await api.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "solved by phone"}, headers=org)
    assert response.status_code == 200, response.text

    wait_for(browser, "the cancellation", lambda d: text_of(d, "headline") == "This visit was cancelled")


async def test_where_websockets_fail_the_page_keeps_up_by_reading_the_link(
    api: httpx.AsyncClient, server: str, browser: WebDriver
) -> None:
    org = await new_org(api)
    job, auth = await assigned_job(api, org, km=3)
    await step(api, auth, job["id"], "en-route")
    await send_pings(api, auth, ping(north(3), speed_mps=12.0))
    # A network that lets no WebSocket through (some corporate proxies): every attempt closes at once.
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "window.WebSocket = class { constructor() { setTimeout(() => this.onclose({code: 1006}), 10); } }"},
    )

    browser.get(f"{server}/t/{job['tracking_token']}")
    wait_for(browser, "the page to notice", lambda d: text_of(d, "live") == "Reconnecting…")
    await send_pings(api, auth, ping(north(1), speed_mps=12.0))

    wait_for(
        browser,
        "the ETA to follow the ping",
        lambda d: text_of(d, "eta-text") == "Arriving in about 2 min",
        within=20,
    )
    assert f"{north(1)['lat']:.5f}" in text_of(browser, "position-text")
