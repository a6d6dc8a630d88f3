"""The vLLM client against a real vLLM 0.32 server: every outcome and error class on vLLM's own answers."""

from __future__ import annotations

import pytest

from lora_controller.devenv.realvllm import RealVllmServer
from lora_controller.vllm import (
    AdapterInvalid,
    Endpoint,
    LoadOutcome,
    NameConflict,
    UnloadOutcome,
    VllmClient,
    create_session,
)
from tests.realvllm import lane
from tests.realvllm.conftest import BASE_MODEL

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the servers to start


async def test_client_round_trip_on_real_vllm(real_servers: list[RealVllmServer], fixtures_root) -> None:
    server = real_servers[0]
    ep = Endpoint("127.0.0.1", server.port)
    adapters = str(fixtures_root)
    async with create_session(limit=8, limit_per_host=4) as session:
        c = VllmClient(session=session, timeout=30)
        assert await c.health(ep)
        try:
            assert (await c.load_adapter(ep, name="rt", path=f"{adapters}/lora-a")).outcome is LoadOutcome.LOADED
            again = await c.load_adapter(ep, name="rt", path=f"{adapters}/lora-a")
            assert again.outcome is LoadOutcome.ALREADY_LOADED
            models = await c.list_models(ep)
            card = models.adapter("rt")
            assert card is not None and card.root == f"{adapters}/lora-a" and card.parent == BASE_MODEL
            assert (await c.load_adapter(ep, name="rt", path=f"{adapters}/lora-b", inplace=True)).outcome \
                is LoadOutcome.RELOADED
            assert (await c.list_models(ep)).adapter("rt").root == f"{adapters}/lora-b"  # type: ignore[union-attr]

            with pytest.raises(AdapterInvalid) as rank:
                await c.load_adapter(ep, name="rt-r16", path=f"{adapters}/lora-r16")
            assert rank.value.reason == "rank 16 exceeds the pod's max_lora_rank 8"
            with pytest.raises(AdapterInvalid) as missing:
                await c.load_adapter(ep, name="rt-missing", path=f"{adapters}/does-not-exist")
            assert f"{adapters}/does-not-exist" in missing.value.reason  # our path, not vLLM's <path>
            with pytest.raises(AdapterInvalid) as noweights:
                await c.load_adapter(ep, name="rt-nw", path=f"{adapters}/lora-noweights")
            assert not noweights.value.retryable
            with pytest.raises(NameConflict):
                await c.load_adapter(ep, name=BASE_MODEL, path=f"{adapters}/lora-a")
            assert [m.id for m in (await c.list_models(ep)).adapters] == ["rt"]  # failures register nothing

            status, body = await lane.complete(server.url, "rt")
            assert status == 200 and body["model"] == "rt", body
            assert (await c.unload_adapter(ep, name="rt")).outcome is UnloadOutcome.UNLOADED
            assert (await c.unload_adapter(ep, name="rt")).outcome is UnloadOutcome.NOT_LOADED
            status, body = await lane.complete(server.url, "rt")
            assert status == 404, body
        finally:
            await lane.unload_all(server.url)
