"""The placement view in headless Chromium against the controller process and the demo's world:
login with the router token, the demo's state drawn (resources, matrix cells as the pods report
them, capacity bars), a failed adapter's reason shown, hostile markup shown as text and never run,
a pod deletion reflected without a reload, no console error; a screenshot left as an artifact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from lora_controller.devenv.controlplane import ControlPlane
from tests.view.browser import artifacts, chromium, console_errors
from tests.view.world import HOSTILE, TOKEN, World, demo_world, until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def world(control_plane: ControlPlane,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with demo_world(control_plane, tmp_path_factory.mktemp("view"), token=TOKEN) as w:
        yield w


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as chrome:
        yield chrome


def _cells(chrome: webdriver.Chrome) -> dict[tuple[str, str], str]:
    """(adapter, pod) -> the state the matrix shows."""
    return {tuple(k.split("|")): v for k, v in chrome.execute_script("""
        const pods = [...document.querySelectorAll('#matrix-table thead th.pod')].map(t => t.dataset.pod);
        const out = {};
        for (const tr of document.querySelectorAll('#matrix-table tbody tr')) {
          const name = tr.dataset.adapter.split('/')[1];
          [...tr.querySelectorAll('td')].forEach((td, i) => { if (td.dataset.state) out[name + '|' + pods[i]] = td.dataset.state; });
        }
        return out;""").items()}


def _served(world: World) -> dict[tuple[str, str], str]:
    return {(a, p): "confirmed" for p in world.cluster.pods for a in world.cluster.loaded(p)}


def _text(chrome: webdriver.Chrome) -> str:
    return str(chrome.find_element(By.TAG_NAME, "body").text)


async def _get(url: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.request(kwargs.pop("method", "GET"), url,
                                                        allow_redirects=False, **kwargs) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_the_token_guards_the_page_and_the_cookie_opens_reads_only(world: World) -> None:
    status, body, headers = await _get(world.ctl.url + "/")
    assert status == 200 and 'name="token"' in body and "v1/fleet" not in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = await _get(world.ctl.url + "/login", method="POST", data={"token": "wrong"})
    assert "not the controller" in body and "Set-Cookie" not in _
    status, _, headers = await _get(world.ctl.url + "/login", method="POST", data={"token": TOKEN})
    assert status == 303 and headers["Location"] == "./"
    cookie = headers["Set-Cookie"]
    assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    jar = {"Cookie": f"lora_view={value}"}
    assert (await _get(world.ctl.url + "/v1/fleet", headers=jar))[0] == 200
    assert (await _get(world.ctl.url + "/v1/fleet"))[0] == 401
    assert (await _get(world.ctl.url + "/v1/fleet", headers={"Cookie": "lora_view=x"}))[0] == 401
    plan = {"apiVersion": "v1", "kind": "List", "items": []}
    assert (await _get(world.ctl.url + "/v1/plan", method="POST", json=plan, headers=jar))[0] == 401
    # Health, metrics and the static files stay open.
    for path in ("/healthz", "/metrics", "/static/view.js"):
        assert (await _get(world.ctl.url + path))[0] == 200, path
    assert TOKEN not in world.ctl.log_path.read_text()


async def test_the_page_shows_the_demo_and_updates_without_reload(
        world: World, browser: webdriver.Chrome) -> None:
    browser.get(world.ctl.url + "/")
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.login-form button").click()
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, "#resources-table tbody tr"),
          what="the LoraAdapters table")
    assert TOKEN not in browser.current_url
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["lora_view"]["httpOnly"] and cookies["lora_view"]["value"] != TOKEN

    # The demo's state: resources with their phase, the matrix as the pods report it, the bars.
    await until(lambda: _cells(browser) == _served(world), what="the matrix to equal the pods' reports")
    rows = {tr.get_attribute("data-resource").split("/")[1]: tr.text for tr in
            browser.find_elements(By.CSS_SELECTOR, "#resources-table tbody tr")}
    assert "Ready" in rows["local-adapters"] and "Ready" in rows["s3-adapters"], rows
    assert "Failed" in rows["big-rank"], rows
    for pod in world.cluster.pods:
        card = browser.find_element(By.CSS_SELECTOR, f'.pod[data-pod="{world.namespace}/{pod}"]')
        assert f"slots {len(world.cluster.loaded(pod))} / 6" in card.text, card.text

    # A failed adapter shows its reason, with its figures.
    text = _text(browser)
    assert "huge-lora: placed 0 of every eligible pod: rank 64 exceeds the max-lora-rank" in text

    # Hostile markup in a base model and a reason: shown as text, never run.
    assert 'onerror="window.__pwned=1"' in text and "<script>window.__pwned=2</script>" in text
    assert browser.execute_script("return window.__pwned === undefined")
    options = [o.get_attribute("value") for o in
               browser.find_elements(By.CSS_SELECTOR, "#f-model option")]
    assert HOSTILE in options

    browser.set_window_size(1400, 2200)
    shot = artifacts() / "placement-view.png"
    browser.save_screenshot(str(shot))
    browser.set_window_size(1400, 1000)
    assert shot.stat().st_size > 10_000

    # A pod deleted: gone from the bars and the matrix, the adapters re-placed, same document.
    browser.execute_script("window.__sameDocument = true")
    await world.cluster.delete_pod("vllm-tiny-1")
    await until(lambda: not browser.find_elements(
        By.CSS_SELECTOR, f'.pod[data-pod="{world.namespace}/vllm-tiny-1"]'), what="the card gone")
    await until(lambda: _cells(browser) == _served(world) and all(p != "vllm-tiny-1" for _, p in
                                                         _cells(browser)),
          timeout=45, what="the matrix to follow the re-placement")
    assert browser.execute_script("return window.__sameDocument === true")
    assert console_errors(browser) == []


async def test_filters_narrow_the_matrix(world: World, browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "f-search").send_keys("support")
    await until(lambda: {a for a, _ in _cells(browser)} == {"support-en", "support-fr"},
          what="only the support adapters")
    browser.execute_script("""const s = document.getElementById('f-search');
        s.value = ''; s.dispatchEvent(new Event('input'));""")
    browser.execute_script("""const s = document.getElementById('f-resource');
        s.value = 'local-adapters'; s.dispatchEvent(new Event('change'));""")
    await until(lambda: {a for a, _ in _cells(browser)} == {"chat-lora", "sql-lora", "summary-lora"},
          what="only local-adapters' adapters")
    state = json.loads(browser.execute_script(
        "return JSON.stringify([...document.querySelectorAll('#resources-table tbody tr')]"
        ".map(t => t.dataset.resource))"))
    assert state == [f"{world.namespace}/local-adapters"]
    assert console_errors(browser) == []


def test_static_assets_need_no_build(world: World) -> None:
    """What the page loads is in the package, as written (no bundle, no external URL)."""
    static = Path(__file__).resolve().parents[2] / "lora_controller" / "server" / "static"
    names = sorted(p.name for p in static.iterdir())
    assert names == ["index.html", "login.html", "view.css", "view.js"]
    for p in static.iterdir():
        assert "http://" not in p.read_text() and "https://" not in p.read_text(), p.name
