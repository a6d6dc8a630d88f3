"""The client against simulated pods: outcomes, typed errors, transport failures, bounds, API keys."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from lora_controller.simulator import SimulatedFleet
from lora_controller.simulator.config import PodConfig
from lora_controller.vllm import (
    AdapterInvalid,
    Endpoint,
    LoadOutcome,
    NameConflict,
    PodResponseInvalid,
    RuntimeUpdatesDisabled,
    TransientError,
    Unauthorized,
    UnloadOutcome,
    VllmClient,
)
from lora_controller.vllm.client import MAX_ANSWER_BYTES
from lora_controller.vllm.errors import Operation
from lora_controller.vllm.models import MAX_MODEL_ENTRIES
from lora_controller.vllm.serve_args import LoraModule
from tests.vllm.conftest import PodFactory


def client(session: aiohttp.ClientSession, **kw: object) -> VllmClient:
    return VllmClient(session=session, timeout=kw.pop("timeout", 5.0), **kw)  # type: ignore[arg-type]


async def test_load_list_reload_unload(session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path,
                                       model_dir: str) -> None:
    _, ep = await make_pod()
    c = client(session)
    models = await c.list_models(ep)
    assert [b.id for b in models.base_models] == [model_dir] and models.adapters == ()

    a_path = str(adapters_root / "lora-a")
    result = await c.load_adapter(ep, name="a", path=a_path)
    assert result.outcome is LoadOutcome.LOADED
    again = await c.load_adapter(ep, name="a", path=a_path)
    assert again.outcome is LoadOutcome.ALREADY_LOADED

    models = await c.list_models(ep)
    card = models.adapter("a")
    assert card is not None and card.root == a_path and card.parent == model_dir

    b_path = str(adapters_root / "lora-b")
    reloaded = await c.load_adapter(ep, name="a", path=b_path, inplace=True)
    assert reloaded.outcome is LoadOutcome.RELOADED
    assert (await c.list_models(ep)).adapter("a").root == b_path  # type: ignore[union-attr]

    assert (await c.unload_adapter(ep, name="a")).outcome is UnloadOutcome.UNLOADED
    assert (await c.unload_adapter(ep, name="a")).outcome is UnloadOutcome.NOT_LOADED
    assert (await c.list_models(ep)).adapter_names == ()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("does-not-exist", "no adapter found at {path}"),
        ("lora-r16", "rank 16 exceeds the pod's max_lora_rank 8"),
        ("lora-noweights", "the adapter has no weights file (adapter_model.safetensors/.bin/.pt)"),
        ("lora-badconfig", "adapter_config.json is not valid JSON"),
    ],
)
async def test_invalid_adapters_have_actionable_reasons(
    session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path, fixture: str, expected: str
) -> None:
    pod, ep = await make_pod()
    path = str(adapters_root / fixture)
    with pytest.raises(AdapterInvalid) as info:
        await client(session).load_adapter(ep, name="x", path=path)
    assert info.value.reason == expected.format(path=path)
    assert not info.value.retryable
    assert pod.adapters == {}  # a failed load registers nothing


async def test_rank_within_a_larger_max_loads(
    session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path
) -> None:
    _, ep = await make_pod(max_lora_rank=16)
    result = await client(session).load_adapter(ep, name="r16", path=str(adapters_root / "lora-r16"))
    assert result.outcome is LoadOutcome.LOADED


async def test_name_of_base_model_is_a_conflict(
    session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path
) -> None:
    _, ep = await make_pod(served_model_names=("llama", "llama-alias"))
    with pytest.raises(NameConflict):
        await client(session).load_adapter(ep, name="llama-alias", path=str(adapters_root / "lora-a"))


async def test_runtime_updates_disabled(session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path) -> None:
    _, ep = await make_pod(runtime_lora_updating=False)
    c = client(session)
    with pytest.raises(RuntimeUpdatesDisabled):
        await c.load_adapter(ep, name="a", path=str(adapters_root / "lora-a"))
    with pytest.raises(RuntimeUpdatesDisabled):
        await c.unload_adapter(ep, name="a")
    assert (await c.list_models(ep)).adapter_names == ()


async def test_500s_refusals_and_hangs_are_transient(
    session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path
) -> None:
    pod, ep = await make_pod()
    c = client(session, timeout=0.3)
    pod.faults.error_rate_500 = 1.0
    with pytest.raises(TransientError) as info:
        await c.list_models(ep)
    assert info.value.status == 500 and info.value.retryable
    pod.faults.error_rate_500 = 0.0
    pod.faults.refuse_loads = True
    with pytest.raises(TransientError):
        await c.load_adapter(ep, name="a", path=str(adapters_root / "lora-a"))
    pod.faults.refuse_loads = False
    pod.faults.update({"hang_rate": 1.0, "hang_seconds": 2.0})
    started = time.monotonic()
    with pytest.raises(TransientError, match="no answer within"):
        await c.list_models(ep)
    assert time.monotonic() - started < 1.5
    assert await c.health(ep, call_timeout=0.2) is False


async def test_refused_connection_and_health(session: aiohttp.ClientSession, make_pod: PodFactory) -> None:
    pod, ep = await make_pod()
    c = client(session)
    assert await c.health(ep) is True
    pod.faults.unhealthy = True
    assert await c.health(ep) is False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(TransientError):
        await c.list_models(Endpoint("127.0.0.1", free))
    assert await c.health(Endpoint("127.0.0.1", free)) is False


async def test_restart_forgets_runtime_adapters_keeps_static(
    session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path
) -> None:
    pod, ep = await make_pod(lora_modules=(LoraModule("static", str(adapters_root / "lora-d")),))
    c = client(session)
    await c.load_adapter(ep, name="a", path=str(adapters_root / "lora-a"))
    assert (await c.list_models(ep)).adapter_names == ("static", "a")
    restart = asyncio.ensure_future(pod.restart(downtime=0.3))
    await asyncio.sleep(0.1)
    with pytest.raises(TransientError):  # refused while down
        await c.list_models(ep)
    await restart
    assert (await c.list_models(ep)).adapter_names == ("static",)
    assert pod.restarts == 1


async def test_api_key(session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path) -> None:
    secret = "s3cr3t-key-value"
    _, ep = await make_pod(api_key=secret)
    with pytest.raises(Unauthorized) as info:
        await client(session).list_models(ep)
    assert secret not in str(info.value) and secret not in repr(info.value)
    keyed = Endpoint(ep.host, ep.port, api_key=secret)
    assert secret not in repr(keyed) and keyed == ep
    assert (await client(session).list_models(keyed)).base_models
    assert (await client(session, api_key=secret).load_adapter(
        ep, name="a", path=str(adapters_root / "lora-a"))).outcome is LoadOutcome.LOADED
    assert (await client(session).list_models(ep, api_key=secret)).adapter_names == ("a",)
    assert await client(session).health(ep) is True  # /health is outside /v1


async def test_loads_per_pod_are_bounded(session: aiohttp.ClientSession, fleet: SimulatedFleet, model_dir: str,
                                         adapters_root: Path) -> None:
    pods = [await fleet.add_pod(PodConfig(model=model_dir, max_lora_rank=8)) for _ in range(2)]
    for pod in pods:
        pod.faults.load_latency_ms = 80
    c = VllmClient(session=session, timeout=5, load_concurrency_per_pod=2)
    paths = [str(adapters_root / f"lora-{x}") for x in "abcde"]
    await asyncio.gather(
        *(
            c.load_adapter(Endpoint("127.0.0.1", pod.port), name=f"n{i}", path=paths[i % len(paths)])
            for pod in pods
            for i in range(6)
        )
    )
    for pod in pods:
        assert pod.max_concurrent_loads == 2
        assert len(pod.adapters) == 6
        assert [e.action for e in pod.load_log] == ["load"] * 6


async def test_lora_requests_info(session: aiohttp.ClientSession, make_pod: PodFactory, adapters_root: Path) -> None:
    pod, ep = await make_pod()
    c = client(session)
    assert await c.lora_requests_info(ep) is None  # no request has run yet
    await c.load_adapter(ep, name="a", path=str(adapters_root / "lora-a"))
    pod.faults.token_latency_ms = 100
    async with session.post(ep.url("/v1/completions"),
                            json={"model": "a", "prompt": "hello world", "max_tokens": 4}) as resp:
        task = asyncio.ensure_future(resp.read())
        await task
    info = await c.lora_requests_info(ep)
    assert info is not None and info.max_lora == 2 and info.running == () and info.waiting == ()
    pending = asyncio.ensure_future(session.post(ep.url("/v1/completions"),
                                                 json={"model": "a", "prompt": "hi", "max_tokens": 8}))
    await asyncio.sleep(0.2)
    busy = await c.lora_requests_info(ep)
    assert busy is not None and busy.running == ("a",) and busy.waiting == ("a",)
    (await pending).release()


# -- a hostile pod ------------------------------------------------------------------------------


class HostilePod:
    """A loopback "vLLM pod" whose answers are whatever the test sets, streamed in 64 KiB chunks
    (chunked, or with the Content-Length the test claims); `sent` counts what it wrote."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self.repeat = 1  # the body is sent this many times
        self.claim_length: int | None = None
        self.sent = 0
        self._runner: web.AppRunner | None = None
        self.endpoint = Endpoint("127.0.0.1", 0)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.endpoint = Endpoint("127.0.0.1", site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.claim_length is not None:
            resp.content_length = self.claim_length
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(self.repeat):
                for i in range(0, len(self.body), 64 * 1024):
                    chunk = self.body[i:i + 64 * 1024]
                    await resp.write(chunk)
                    self.sent += len(chunk)
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp


@pytest.fixture
async def hostile() -> AsyncIterator[HostilePod]:
    pod = HostilePod()
    await pod.start()
    try:
        yield pod
    finally:
        await pod.stop()


def _models(n: int) -> bytes:
    """A /v1/models answer listing `n` adapters, compact (100,000 of them fit in 4 MiB)."""
    cards: list[dict[str, str | None]] = [{"id": "base", "root": "base", "parent": None}]
    cards += [{"id": f"x{i}", "parent": "base"} for i in range(n)]
    return json.dumps({"object": "list", "data": cards}, separators=(",", ":")).encode()


async def test_huge_models_answer_is_cut_and_names_what_the_pod_did(
    session: aiohttp.ClientSession, hostile: HostilePod
) -> None:
    hostile.body = b" " * (1 << 20)
    hostile.repeat = 100  # a 100 MiB answer, chunked
    c = client(session)
    with pytest.raises(PodResponseInvalid) as info:
        await c.list_models(hostile.endpoint)
    assert "/v1/models" in info.value.reason and "larger than" in info.value.reason
    assert info.value.retryable
    assert hostile.sent < 16 * (1 << 20)  # the client stopped reading
    hostile.claim_length, hostile.repeat = 100 << 20, 0  # announced, never sent
    with pytest.raises(PodResponseInvalid, match="larger than"):
        await c.list_models(hostile.endpoint)


async def test_load_answer_is_capped_far_below_the_models_cap(
    session: aiohttp.ClientSession, hostile: HostilePod
) -> None:
    hostile.body = b"x" * (1 << 20)
    with pytest.raises(PodResponseInvalid, match="load_lora_adapter"):
        await client(session).load_adapter(hostile.endpoint, name="a", path="/a")
    with pytest.raises(PodResponseInvalid, match="unload_lora_adapter"):
        await client(session).unload_adapter(hostile.endpoint, name="a")


async def test_too_many_models_are_refused_quickly(
    session: aiohttp.ClientSession, hostile: HostilePod
) -> None:
    hostile.body = _models(100_000)
    assert len(hostile.body) < MAX_ANSWER_BYTES[Operation.LIST_MODELS]
    c = client(session)
    started = time.monotonic()
    with pytest.raises(PodResponseInvalid) as info:
        await c.list_models(hostile.endpoint)
    assert time.monotonic() - started < 2.0
    assert "more than" in info.value.reason and "models" in info.value.reason
    hostile.body = _models(MAX_MODEL_ENTRIES - 1)  # the bound itself is served
    assert len((await c.list_models(hostile.endpoint)).adapters) == MAX_MODEL_ENTRIES - 1


async def test_a_models_answer_of_the_wrong_shape_is_the_pods_fault(
    session: aiohttp.ClientSession, hostile: HostilePod
) -> None:
    for body in (b"[" * 100_000, b'{"data": 5}', b"\xff\xfe", b'{"data": [{"id": 7}]}'):
        hostile.body = body
        with pytest.raises(PodResponseInvalid, match="/v1/models"):
            await client(session).list_models(hostile.endpoint)
