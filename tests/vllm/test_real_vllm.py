"""Opt-in lane: the client against a real vLLM server (set LORA_VLLM_REAL_URL and LORA_VLLM_REAL_ADAPTERS).

No real vLLM runs on this machine (its CPU build pins a torch build PyPI does not serve); start one
elsewhere as the conformance README says (runtime updating on, --max-lora-rank 8, fixtures from
make_fixtures.py at LORA_VLLM_REAL_ADAPTERS on the server's filesystem) and point these tests at it.
"""

from __future__ import annotations

import os
import uuid

import aiohttp
import pytest

from lora_controller.vllm import AdapterInvalid, Endpoint, LoadOutcome, UnloadOutcome, VllmClient

URL = os.environ.get("LORA_VLLM_REAL_URL")
ADAPTERS = os.environ.get("LORA_VLLM_REAL_ADAPTERS")

pytestmark = pytest.mark.skipif(not (URL and ADAPTERS), reason="set LORA_VLLM_REAL_URL and LORA_VLLM_REAL_ADAPTERS")


async def test_real_server_round_trip(session: aiohttp.ClientSession) -> None:
    assert URL and ADAPTERS
    ep = Endpoint.parse(URL, api_key=os.environ.get("LORA_VLLM_REAL_API_KEY"))
    c = VllmClient(session=session, timeout=30)
    assert await c.health(ep)
    name = f"t{uuid.uuid4().hex[:8]}"
    assert (await c.load_adapter(ep, name=name, path=f"{ADAPTERS}/lora-a")).outcome is LoadOutcome.LOADED
    assert (await c.load_adapter(ep, name=name, path=f"{ADAPTERS}/lora-a")).outcome is LoadOutcome.ALREADY_LOADED
    card = (await c.list_models(ep)).adapter(name)
    assert card is not None and card.root == f"{ADAPTERS}/lora-a"
    with pytest.raises(AdapterInvalid, match="max_lora_rank"):
        await c.load_adapter(ep, name=f"{name}-r16", path=f"{ADAPTERS}/lora-r16")
    assert (await c.unload_adapter(ep, name=name)).outcome is UnloadOutcome.UNLOADED
    assert (await c.unload_adapter(ep, name=name)).outcome is UnloadOutcome.NOT_LOADED
