"""The hosted accept page driven by a real browser: headless Chromium (Debian's
`chromium` + `chromium-driver`, installed by `make test`) through Selenium."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import pytest

from tests.e2e.test_invitations import invitation_token, invite

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("REGISTRAR_SKIP_BROWSER") == "1":
            pytest.skip("REGISTRAR_SKIP_BROWSER=1 and no chromium/chromedriver")
        pytest.fail("chromium and chromium-driver are required (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def test_invitee_opens_the_emailed_link_fills_the_form_and_is_registered(
    service, org, http, mailbox, e2e_pool, browser, tmp_path
):
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    assert await invite(http, service, org, email, locale="en_US") == 204
    mail = await mailbox.wait_for(lambda m: m["To"] == email)
    link = f"{service.base_url}/invitations/{invitation_token(mail)}"

    def fill_and_submit() -> tuple[str, str]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        browser.get(link)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Create your account"
        # Every input has a visible label pointing at it (accessibility).
        for field in ("name", "password", "confirmPassword"):
            assert browser.find_element(By.CSS_SELECTOR, f"label[for={field}]").text
        browser.find_element(By.ID, "name").send_keys("Brenda Browser")
        browser.find_element(By.ID, "password").send_keys("a browser password")
        browser.find_element(By.ID, "confirmPassword").send_keys("a browser password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 20).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "result"), "ready")
        )
        browser.save_screenshot(str(tmp_path / "accepted.png"))
        return browser.find_element(By.ID, "result").text, browser.page_source

    heading, page = await asyncio.to_thread(fill_and_submit)
    assert heading == "Your account is ready"
    assert email in page
    user = await e2e_pool.fetchrow(
        "SELECT name, is_approved, source FROM users WHERE email = $1", email
    )
    assert dict(user) == {"name": "Brenda Browser", "is_approved": True, "source": "invitation"}
