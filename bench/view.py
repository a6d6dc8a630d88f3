"""Benchmark: the placement view at scale. The scale benchmark's world (1,000 pods, 1,000
LoraAdapters, 10,000 adapters in 10 namespaces, every resource Ready), then the page at `/` in
headless Chromium (Debian's, through hack/chromium and selenium).

Measured: the page's load time, from navigation start to the first complete drawing (LoraAdapters,
pod bars, the first page of the adapters x pods matrix, Events), as the browser clocks it
(`load_ms`) and as seen from outside, WebDriver round trips included (`wall_ms`); the time one
drawing of everything takes in the browser (`render_ms`); the time to draw after a filter change to
one namespace (`filter_ms`); the size and server time of `/v1/fleet` and of one matrix page
(`/v1/fleet/adapters`, 50 rows); an unchanged poll answered 304. Last line: one JSON object.

    python bench/view.py [scale options, e.g. --namespaces 10 --pods-per-namespace 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from scale import add_arguments, build
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from lora_controller.devenv.local import LocalCluster

REPO = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


async def timed_get(url: str, headers: dict[str, str] | None = None,
                    repeat: int = 5) -> tuple[float, int, str | None]:
    """(median ms, body bytes, ETag) of `repeat` GETs."""
    times, size, tag = [], 0, None
    async with aiohttp.ClientSession() as s:
        for _ in range(repeat):
            started = time.perf_counter()
            async with s.get(url, headers=headers or {}) as r:
                body = await r.read()
                size, tag = len(body), r.headers.get("ETag")
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), size, tag


def browse(url: str, namespace: str) -> dict[str, float]:
    lines = subprocess.run([str(REPO / "hack" / "chromium")], capture_output=True, text=True,
                           check=True).stdout.split()
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = lines[0]
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=lines[1]))
        try:
            started = time.perf_counter()
            chrome.get(url)
            while not chrome.execute_script(
                    "return document.querySelectorAll('#matrix-table tbody tr').length >= 50 && "
                    "document.querySelectorAll('.pod').length > 0"):
                time.sleep(0.01)
            wall_ms = (time.perf_counter() - started) * 1000
            load_ms = float(chrome.execute_script("return document.body.dataset.firstDrawnMs"))
            render_ms = float(chrome.execute_script("return document.body.dataset.renderMs"))
            timing = chrome.execute_script("""
                const nav = performance.getEntriesByType('navigation')[0];
                const res = performance.getEntriesByType('resource');
                const first = (part) => res.find(r => r.name.includes(part));
                return {dom: nav.domContentLoadedEventEnd, fleet: first('v1/fleet?') || first('v1/fleet'),
                        rows: first('v1/fleet/adapters')};""")
            phases = {"dom_ready_ms": round(timing["dom"], 1),
                      "fleet_fetched_ms": round(timing["fleet"]["responseEnd"], 1),
                      "rows_fetched_ms": round(timing["rows"]["responseEnd"], 1)}
            started = time.perf_counter()
            chrome.execute_script(f"""const s = document.getElementById('f-namespace');
                s.value = {json.dumps(namespace)}; s.dispatchEvent(new Event('change'));""")
            while not chrome.execute_script(
                    "const r = [...document.querySelectorAll('#matrix-table tbody tr')];"
                    f"return r.length > 0 && r.every(t => t.dataset.adapter.startsWith({json.dumps(namespace + '/')}))"):
                time.sleep(0.01)
            filter_ms = (time.perf_counter() - started) * 1000
            errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
            return {"load_ms": round(load_ms, 1), "wall_ms": round(wall_ms, 1),
                    "render_ms": render_ms, **phases,
                    "filter_ms": round(filter_ms, 1)}
        finally:
            chrome.quit()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with LocalCluster() as world:
        setup_s, ready_s = await build(world, args)
        assert world.controller is not None
        url = world.controller.url
        fleet_ms, fleet_bytes, tag = await timed_get(url + "/v1/fleet")
        rows_ms, rows_bytes, _ = await timed_get(url + "/v1/fleet/adapters?limit=50")
        poll_ms, _, _ = await timed_get(url + "/v1/fleet", {"If-None-Match": tag or ""})
        figures = await asyncio.to_thread(browse, url + "/", f"scale-{args.namespaces - 1:02d}")
        return {**figures, "fleet_kb": round(fleet_bytes / 1024, 1), "fleet_ms": round(fleet_ms, 1),
                "rows_kb": round(rows_bytes / 1024, 1), "rows_ms": round(rows_ms, 1),
                "poll_304_ms": round(poll_ms, 1),
                "pods": args.namespaces * args.pods_per_namespace,
                "adapters": args.namespaces * args.crs_per_namespace * args.adapters_per_cr,
                "world_ready_s": round(ready_s, 1), "setup_s": round(setup_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
