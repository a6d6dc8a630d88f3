"""Prometheus metrics of the sources layer: discovery runs and adapter downloads."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DISCOVERIES = Counter(
    "lora_controller_source_discoveries_total",
    "Discovery runs, by source type and result (ok or a failure reason).",
    ["source", "result"],
)
DISCOVERY_SECONDS = Histogram(
    "lora_controller_source_discovery_duration_seconds",
    "Time to discover the adapters of one LoraAdapter.",
    ["source"],
)
DOWNLOADS = Counter(
    "lora_controller_adapter_downloads_total",
    "Adapter file downloads into the adapter store, by source type and result.",
    ["source", "result"],
)
DOWNLOAD_BYTES = Counter(
    "lora_controller_adapter_download_bytes_total",
    "Bytes written into the adapter store, by source type.",
    ["source"],
)
STAGED = Counter(
    "lora_controller_adapter_stages_total",
    "Adapter versions staged (downloaded) or found already staged (reused).",
    ["source", "result"],
)
