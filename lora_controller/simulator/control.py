"""The simulator's control endpoint, `/_sim/...` on each pod's port, for tests and benchmarks in other processes.

`GET /_sim/state` (registered adapters in order, load log, most concurrent loads, request counts,
knobs), `GET|POST /_sim/faults` (read or change fault knobs), `POST /_sim/restart` (`{"downtime": s}`:
forget runtime-loaded adapters, drop connections), `POST /_sim/reset-stats`. A real vLLM has no such
routes; turn them off with `--no-control-endpoint`. The fleet routes `/_sim/` requests here.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lora_controller.simulator.pod import SimulatedPod
from lora_controller.simulator.responses import json_response, not_found


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


async def handle_control(pod: SimulatedPod, request: web.Request) -> web.StreamResponse:
    """Dispatch one `/_sim/` request."""
    path, method = request.path, request.method
    try:
        if path == "/_sim/state" and method == "GET":
            return json_response(pod.state())
        if path == "/_sim/faults" and method == "GET":
            return json_response(pod.faults.as_dict())
        if path == "/_sim/faults" and method in ("POST", "PUT", "PATCH"):
            pod.faults.update(await _json(request))
            return json_response(pod.faults.as_dict())
        if path == "/_sim/restart" and method == "POST":
            downtime = float((await _json(request)).get("downtime", 0.0))

            pod.spawn(pod.restart(downtime=downtime))
            return json_response({"restarting": True, "downtime": downtime}, status=202)
        if path == "/_sim/reset-stats" and method == "POST":
            pod.reset_stats()
            return json_response({"reset": True})
    except KeyError as exc:
        return json_response({"error": f"unknown knob {exc.args[0]!r}"}, status=400)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc)}, status=400)
    return not_found()
