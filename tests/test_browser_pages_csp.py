"""The pages under their Content-Security-Policy in Chromium, beyond the journey test: the
API docs (Swagger UI, served offline), the admin's log-in, and the usage page's period
picker (once an inline handler, now a static script). Not one violation is allowed."""

import pytest

from tests.browser import CHROMIUM_ARGS, chromium_or_skip, collect_csp_violations, screenshot


@pytest.fixture
def browser_context(arouter_server, transactional_db):
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=arouter_server.url)
        context.set_default_timeout(30_000)
        violations = collect_csp_violations(context)
        yield context, violations
        browser.close()


def test_the_api_docs_render_under_the_policy(browser_context):
    context, violations = browser_context
    page = context.new_page()
    response = page.goto("/v1/docs")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    # Swagger UI fetched the schema and drew its operations.
    models = page.locator(".swagger-ui .opblock-summary-path", has_text="/v1/models").first
    models.wait_for()
    assert "ARouter" in page.inner_text(".swagger-ui .info .title")
    models.click()
    page.wait_for_selector(".opblock-body")
    screenshot(page, "csp-01-docs")
    assert violations == []


def test_the_admin_log_in_renders_under_the_policy(browser_context):
    context, violations = browser_context
    page = context.new_page()
    page.goto("/admin/login/")
    page.wait_for_selector("#login-form")
    screenshot(page, "csp-02-admin-login")
    assert violations == []


# The owner first: while Playwright's loop runs, this thread may not use the database.
def test_the_usage_period_picker_applies_at_once(owner, team, browser_context):
    context, violations = browser_context
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/teams/{team.pk}/")
    page.goto(f"/teams/{team.pk}/usage/?start=2026-01-01&end=2026-01-31")
    assert page.input_value("input[name=start]") == "2026-01-01"

    with page.expect_navigation():
        page.select_option("select[name=period]", "7d")

    assert "period=7d" in page.url
    assert "start=&end=" in page.url  # the custom dates were cleared first
    assert page.input_value("select[name=period]") == "7d"
    screenshot(page, "csp-03-usage")
    assert violations == []
