"""The cashier page in a real browser: Debian's headless Chromium driven by selenium,
against the live server and the real worker; the customer approves or declines on the
sandbox's pay page in a second tab while the checkout tab stays open, and the checkout
tab changes screens by itself (no reload: a value its script set at load survives).

Screenshots of every step go to test-artifacts/checkout/. Skipped only when chromium or
chromedriver is not installed (`make install` installs them where it can).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.payment_flow import PaymentFlow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="chromium and chromedriver are not on PATH (Debian packages "
                              "chromium, chromium-driver; `make install` adds them as root)"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "checkout"
WAIT = 30  # seconds; the worker and the callback round trip on a busy machine
PHONE = (390, 844)  # a phone-sized window: the page must fit without sideways scrolling


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="checkout-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--lang=en-US"):
        options.add_argument(arg)
    # A phone's viewport (headless windows have a minimum width; emulation has none).
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": PHONE[0], "height": PHONE[1], "pixelRatio": 2}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


class Customer:
    """One customer at the browser: the checkout tab, and the pay page in a second tab."""

    def __init__(self, driver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.step = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(self, label: str) -> None:
        self.step += 1
        self.driver.save_screenshot(str(ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"))

    def wait(self, condition, message: str):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # A page being replaced (the sandbox's post/redirect) is simply looked at again:
        # mid-navigation Chromium answers with missing, stale or "not in the document"
        # nodes, all WebDriverExceptions. A real failure still ends in the timeout.
        return WebDriverWait(self.driver, WAIT, poll_frequency=0.2,
                             ignored_exceptions=(WebDriverException,)).until(
            lambda d: condition(d), message=message)

    def by_id(self, element_id: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def screen(self) -> str:
        return str(self.driver.execute_script("return document.body.dataset.screen"))

    def page_id(self) -> str | None:
        return self.driver.execute_script("return window.checkoutPageId || null")

    def open_checkout(self, url: str) -> str:
        """Open the page; the id its script set at load (a reload would change it)."""
        self.driver.get(url)
        self.wait(lambda d: self.screen() == "choose", "the method choice")
        assert self.driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), (
            "the page scrolls sideways on a phone-sized screen")
        return str(self.page_id())

    def pay(self) -> str:
        """Press Pay; the sandbox's pay link once the payment has started."""
        self.by_id("pay-button").click()
        link = self.wait(lambda d: self.by_id("pay-link").is_displayed()
                         and self.by_id("pay-link"), "the pay link")
        return str(link.get_attribute("href"))

    def decide_in_second_tab(self, button: str) -> None:
        """Follow the pay link (it opens a tab), press Approve/Decline, come back."""
        checkout_tab = self.driver.current_window_handle
        before = set(self.driver.window_handles)
        self.by_id("pay-link").click()
        new_tabs = self.wait(lambda d: set(d.window_handles) - before, "the pay page tab")
        self.driver.switch_to.window(new_tabs.pop())
        from selenium.webdriver.common.by import By

        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"button.{button}"),
                  "the sandbox's buttons")
        self.shot(f"sandbox-before-{button}")
        self.driver.find_element(By.CSS_SELECTOR, f"button.{button}").click()
        wanted = "succeeded" if button == "approve" else "failed"
        self.wait(lambda d: d.find_element(By.ID, "status").text == wanted,
                  f"the sandbox shows {wanted}")
        self.shot(f"sandbox-{wanted}")
        self.driver.close()
        self.driver.switch_to.window(checkout_tab)

    def wait_screen(self, screen: str) -> None:
        self.wait(lambda d: self.screen() == screen and self.by_id(f"screen-{screen}")
                  .is_displayed(), f"the {screen} screen")


def test_pay_approve_and_the_success_screen_appears_without_a_reload(flow, browser):
    order = flow.order("88.80")
    payment = flow.payment(order["id"], "wechat")
    customer = Customer(browser, "approve")

    loaded = customer.open_checkout(payment["checkout_url"])
    assert customer.by_id("order-number").text == order["order_number"]
    assert customer.by_id("amount").text == "88.80"
    assert customer.by_id("currency").text == "CNY"
    customer.shot("checkout")
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=alipay]").click()
    customer.shot("alipay-chosen")

    pay_url = customer.pay()
    assert flow.at_provider(pay_url)["method"] == "alipay"
    assert customer.by_id("method-name").text == "Alipay"
    assert pay_url.startswith(f"{flow.admin.base_url}/sandbox/pay/tkt_")
    qr = customer.wait(lambda d: customer.by_id("qr-image").is_displayed()
                       and d.execute_script("return document.getElementById('qr-image')"
                                            ".naturalWidth") > 0 and True, "the QR image")
    assert qr and customer.by_id("time-left-row").is_displayed()
    assert customer.screen() == "pending"
    customer.shot("pending-with-qr")

    customer.decide_in_second_tab("approve")

    customer.wait_screen("succeeded")
    customer.shot("succeeded")
    assert customer.page_id() == loaded  # updated in place, never reloaded
    assert customer.by_id("status").get_attribute("data-status") == "succeeded"
    assert not customer.by_id("time-left-row").is_displayed()
    flow.settle(pay_url)
    assert flow.get(payment["id"])["status"] == "succeeded"
    assert flow.get_order(order["id"])["status"] == "paid"


def test_decline_shows_failed_then_retry_and_approve_succeeds(flow, browser):
    order = flow.order("100.00")
    first = flow.payment(order["id"], "alipay")
    customer = Customer(browser, "decline-retry")

    loaded = customer.open_checkout(first["checkout_url"])
    first_url = customer.pay()
    customer.shot("pending")
    customer.decide_in_second_tab("decline")

    customer.wait_screen("failed")
    customer.wait(lambda d: customer.by_id("retry-button").is_displayed(), "Retry")
    customer.shot("failed")
    assert customer.page_id() == loaded  # no reload on the way to failed

    # The 30 s between attempts pass in the database, not in the test's wall clock.
    flow.move_back("payments", first["id"], 31, "created_at")
    customer.by_id("retry-button").click()

    # Retry navigates to the new attempt's own checkout link.
    customer.wait(lambda d: f"/checkout/{first['id']}?" not in d.current_url
                  and customer.screen() == "choose", "the new attempt's page")
    retried = customer.page_id()
    assert retried and retried != loaded
    attempts = flow.admin.get(f"/api/v1/payments?order_id={order['id']}").json()["items"]
    second = next(p for p in attempts if p["id"] != first["id"])
    assert (second["attempt"], second["method"], second["status"]) == (2, "alipay", "init")
    assert browser.current_url == second["checkout_url"]
    customer.shot("retry-page")

    second_url = customer.pay()
    assert second_url != first_url
    customer.decide_in_second_tab("approve")

    customer.wait_screen("succeeded")
    customer.shot("succeeded")
    assert customer.page_id() == retried
    flow.settle(first_url, second_url)
    assert flow.get(first["id"])["status"] == "failed"
    assert flow.get(second["id"])["status"] == "succeeded"
    assert flow.get_order(order["id"])["status"] == "paid"


# --- how the page looks: zh and en, phone and desktop (screenshots kept for review) ------

DESKTOP = (1280, 860)


def _driver(lang: str, size: tuple[int, int], phone: bool):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="checkout-look-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--lang={lang}",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
            "width": size[0], "height": size[1], "pixelRatio": 2}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"),
                              options=options)
    return driver, profile


def _line_count(driver, element_id: str) -> int:
    """How many lines an element's text takes (one client rect per line of an inline)."""
    return int(driver.execute_script(
        "const r = document.createRange();"
        "r.selectNodeContents(document.getElementById(arguments[0]));"
        "return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size;",
        element_id))


def _groups_broken(driver) -> int:
    """Order-number groups that were split across lines (must be none)."""
    return int(driver.execute_script(
        "return [...document.querySelectorAll('#order-number .group')]"
        ".filter(g => new Set([...g.getClientRects()].map(x => Math.round(x.top))).size > 1)"
        ".length;"))


@pytest.mark.parametrize(("lang", "width"), [("zh-CN", "phone"), ("en-US", "phone"),
                                            ("zh-CN", "desktop"), ("en-US", "desktop")])
def test_the_cashier_page_reads_as_a_shop_s_checkout(flow, lang, width):
    from selenium.webdriver.common.by import By

    long_number = "SHOP-20261201-ORDER-000012345678-ABCDEF"
    response = flow.admin.post("/api/v1/orders", json={
        "total_amount": "1288.00", "user_id": 1, "order_number": long_number})
    assert response.status_code == 201, response.text
    payment = flow.payment(response.json()["id"], "wechat")
    size = PHONE if width == "phone" else DESKTOP
    driver, profile = _driver(lang, size, phone=width == "phone")
    try:
        customer = Customer(driver, f"look-{lang[:2]}-{width}")
        customer.open_checkout(payment["checkout_url"])
        shown = driver.find_element(By.TAG_NAME, "main").text
        assert customer.by_id("shop-name").text == "Demo shop"
        label = "支付方式" if lang.startswith("zh") else "Payment method"
        assert shown.count(label) == 1, shown  # one chooser, no duplicated row
        assert ("应付金额" if lang.startswith("zh") else "Amount due") in shown
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        # The order number breaks between its groups, and only when the line is full.
        assert _groups_broken(driver) == 0
        lines = _line_count(driver, "order-number")
        assert lines == 1 if width == "desktop" else lines >= 2, lines
        assert customer.by_id("order-number").get_attribute("data-value") == long_number
        customer.shot("choose")
        driver.get(payment["checkout_url"].split("?")[0] + "?token=dead")
        assert customer.by_id("not-found").is_displayed()
        customer.shot("dead-link")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_docs_page_shows_an_example_request_and_response_for_each_operation(live_url):
    from selenium.webdriver.common.by import By

    driver, profile = _driver("en-US", DESKTOP, phone=False)
    try:
        driver.get(live_url + "/docs")
        operations = driver.find_elements(By.CSS_SELECTOR, "section.op[id]:not([id^=schema-])")
        assert operations
        for op in operations:
            request = op.find_element(By.CSS_SELECTOR, ".example-request pre").text
            response = op.find_element(By.CSS_SELECTOR, ".example-response pre").text
            assert " HTTP/1.1" in request, op.get_attribute("id")
            assert response.startswith("HTTP/1.1 2"), op.get_attribute("id")
        ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
        for anchor, name in (("createOrder", "create-order"), ("createRefund", "create-refund")):
            driver.execute_script("document.querySelector(arguments[0]).scrollIntoView("
                                  "{block: 'center'})", f"#{anchor} .examples")
            driver.save_screenshot(str(ARTIFACTS.parent / f"docs-{name}.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
