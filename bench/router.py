"""Benchmark: router API throughput and latency at scale, side by side with a bare aiohttp endpoint.

Builds the scale benchmark's world (1,000 resources, 10,000 adapters, 1,000 pods), then drives
`GET /v1/adapters/{name}/pods?namespace=N` (random adapters) with concurrent clients for a fixed time,
and, in the same run, a bare aiohttp server (its own process, like the controller) answering a fixed
JSON body of the same size. The two are driven in turns (`--rounds` rounds of each), so that a
change in the machine's load falls on both. Last line: one JSON object with `rps`, `bare_rps`,
`ratio`, `p50_ms`, `p99_ms`, `bare_p50_ms`, `bare_p99_ms`.

    python bench/router.py [--seconds 10] [--rounds 5] [--clients 32] [scale options, e.g. --namespaces 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time

import aiohttp
from scale import add_arguments, build

from lora_controller.devenv.controlplane import free_port
from lora_controller.devenv.local import LocalCluster

BARE = """
import sys
from aiohttp import web
body = sys.stdin.read().encode()
async def h(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/adapters/{name}/pods", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def drive(urls: list[str], *, seconds: float, clients: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds
        rng = random.Random(7)

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                url = rng.choice(urls)
                t0 = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, errors


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with LocalCluster() as world:
        await build(world, args)
        assert world.controller is not None
        url = world.controller.url
        names = [(f"scale-{n:02d}", f"scale-{n:02d}-c{c:03d}-a{a:02d}")
                 for n in range(args.namespaces) for c in range(args.crs_per_namespace)
                 for a in range(args.adapters_per_cr)]
        urls = [f"{url}/v1/adapters/{name}/pods?namespace={ns}" for ns, name in names]
        async with aiohttp.ClientSession() as s, s.get(urls[0]) as r:
            sample = await r.read()
            assert r.status == 200 and json.loads(sample)["pods"], sample
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(port)], stdin=subprocess.PIPE)
        assert bare.stdin is not None
        bare.stdin.write(sample)
        bare.stdin.close()
        try:
            for _ in range(100):
                try:
                    async with aiohttp.ClientSession() as s, s.get(
                            f"http://127.0.0.1:{port}/v1/adapters/x/pods") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            bare_urls = [u.replace(url, f"http://127.0.0.1:{port}") for u in urls]
            await drive(urls, seconds=1, clients=args.clients)  # warm up
            await drive(bare_urls, seconds=1, clients=args.clients)
            ours, theirs = await in_turns(urls, bare_urls, args)
        finally:
            bare.terminate()
            bare.wait()
        rps, lat, errors = ours
        bare_rps, bare_lat, _ = theirs
        return {
            "rps": round(rps, 1), "bare_rps": round(bare_rps, 1), "ratio": round(rps / bare_rps, 3),
            "p50_ms": _ms(lat, 0.5), "p99_ms": _ms(lat, 0.99),
            "bare_p50_ms": _ms(bare_lat, 0.5), "bare_p99_ms": _ms(bare_lat, 0.99),
            "p99_over_bare": round(_ms(lat, 0.99) / _ms(bare_lat, 0.99), 3),
            "errors": errors, "clients": args.clients, "seconds": args.seconds,
            "rounds": args.rounds, "adapters": len(names), "body_bytes": len(sample),
        }


Driven = tuple[float, list[float], int]


async def in_turns(urls: list[str], bare_urls: list[str], args: argparse.Namespace,
                   ) -> tuple[Driven, Driven]:
    """`args.rounds` turns of each, `args.seconds` in all for each: (rps, latencies, errors)."""
    each = args.seconds / args.rounds
    runs: dict[str, list[Driven]] = {"ours": [], "bare": []}
    for _ in range(args.rounds):
        runs["ours"].append(await drive(urls, seconds=each, clients=args.clients))
        runs["bare"].append(await drive(bare_urls, seconds=each, clients=args.clients))

    def merged(parts: list[Driven]) -> Driven:
        latencies = sorted(x for _, lat, _ in parts for x in lat)
        elapsed = sum(len(lat) / rps for rps, lat, _ in parts if rps)
        return len(latencies) / elapsed, latencies, sum(e for _, _, e in parts)

    return merged(runs["ours"]), merged(runs["bare"])


def _ms(sorted_latencies: list[float], q: float) -> float:
    if q == 0.5:
        return round(1000 * statistics.median(sorted_latencies), 2)
    return round(1000 * sorted_latencies[int(q * (len(sorted_latencies) - 1))], 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
