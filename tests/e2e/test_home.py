"""The home page in a real Chromium over HTTPS."""

from typing import Any

import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e


async def test_home_page_renders_in_chromium_without_console_errors(
    server: RunningServer, page: Any
) -> None:
    response = await page.goto(server.base_url + "/")
    assert response.status == 200
    assert await page.title() == "IOP Sessions"
    heading = page.get_by_role("heading", level=1)
    assert await heading.inner_text() == "Evening groups and sessions, from home"
    assert await page.get_by_role("heading", name="Joining a session?").is_visible()
    assert await page.get_by_role("link", name="988").get_attribute("href") == "tel:988"
    # The stylesheet loaded under the strict CSP: the header has its styled background.
    background = await page.eval_on_selector(
        ".site-header", "el => getComputedStyle(el).backgroundColor"
    )
    assert background == "rgb(255, 255, 255)"
    await page.set_viewport_size({"width": 375, "height": 667})
    assert await heading.is_visible()
    assert page.errors == []


async def test_error_pages_render_in_chromium_without_console_errors(
    server: RunningServer, page: Any
) -> None:
    response = await page.goto(server.base_url + "/missing")
    assert response.status == 404
    assert await page.get_by_role("link", name="Go to the start page").is_visible()
    assert [e for e in page.errors if "404" not in e] == []
