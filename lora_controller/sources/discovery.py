"""Discovery: from a LoraAdapter spec to the adapters it selects, each with files and config.

One interface for every source type. The reader lists candidate folders; `selection` names,
filters, de-duplicates and caps them (pure); only the chosen ones are resolved and have their
adapter_config.json read and checked (validity, weights present, base model), concurrently and
bounded. Whole-source failures raise a SourceError; per-adapter problems come back as AdapterErrors.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from pathlib import Path
from typing import Protocol

import structlog

from lora_controller.api.types import AdapterSource, LoraAdapterSpec, SourceType
from lora_controller.sources import metrics
from lora_controller.sources.adapter_config import (
    MAX_CONFIG_BYTES,
    base_model_matches,
    parse_adapter_config,
)
from lora_controller.sources.credentials import SourceCredentials
from lora_controller.sources.errors import (
    ADAPTER_WEIGHTS_MISSING,
    PICKLE_WEIGHTS_NOT_ALLOWED,
    AdapterError,
    AdapterWeightsLinked,
    BaseModelMismatch,
    InvalidAdapterConfig,
    NoAdaptersMatch,
    SourceError,
    redact,
)
from lora_controller.sources.local import LocalSource
from lora_controller.sources.model import (
    CONFIG_FILE,
    PICKLE_WEIGHT_FILES,
    WEIGHT_FILES,
    AdapterFile,
    Candidate,
    DiscoveredAdapter,
    Discovery,
    SourceOptions,
    content_version,
    weights_file,
)
from lora_controller.sources.selection import describe_selectors, select

log = structlog.get_logger(__name__)


class SourceReader(Protocol):
    """What discovery and staging need from a source."""

    @property
    def endpoint(self) -> str | None: ...

    @property
    def notes(self) -> tuple[str, ...]:
        """What a person should know about the source after `candidates()` (may be empty)."""
        ...

    async def candidates(self) -> list[Candidate]: ...

    async def resolve(self, candidate: Candidate) -> Candidate: ...

    async def read_file(self, candidate: Candidate, path: str, *, max_bytes: int) -> bytes:
        """At most `max_bytes` of a file of `candidate`; more than that fails (never read)."""
        ...

    async def fetch(self, adapter: DiscoveredAdapter, file: AdapterFile, dest: Path) -> None: ...

    async def aclose(self) -> None: ...


def open_source(
    source: AdapterSource,
    *,
    credentials: SourceCredentials | None,
    options: SourceOptions,
) -> SourceReader:
    """A reader for `source` (no I/O yet). The HuggingFace and S3 clients are imported on first
    use: a controller with only local sources never loads them (about 20 MiB less)."""
    if source.type is SourceType.HUGGINGFACE:
        from lora_controller.sources.hf import HuggingFaceSource

        return HuggingFaceSource(
            source.repository, revision=source.revision, options=options,
            token=credentials.hf_token if credentials else None,
            secret_name=credentials.secret_name if credentials else "",
        )
    if source.type is SourceType.S3:
        from lora_controller.sources.s3 import S3Source

        return S3Source(
            source.repository, endpoint=source.endpoint, region=source.region,
            credentials=credentials, options=options,
        )
    return LocalSource(source.repository, options=options)


def open_for_adapter(
    adapter: DiscoveredAdapter,
    *,
    credentials: SourceCredentials | None,
    options: SourceOptions,
) -> SourceReader:
    """A reader for staging `adapter`, at the endpoint it was discovered through."""
    if adapter.source_type is SourceType.HUGGINGFACE:
        from lora_controller.sources.hf import HuggingFaceSource

        return HuggingFaceSource(
            adapter.repository, revision=adapter.revision, options=options,
            endpoint=adapter.endpoint, token=credentials.hf_token if credentials else None,
            secret_name=credentials.secret_name if credentials else "",
        )
    if adapter.source_type is SourceType.S3:
        from lora_controller.sources.s3 import S3Source

        return S3Source(
            adapter.repository, endpoint=adapter.endpoint, region=adapter.region,
            credentials=credentials, options=options,
        )
    return LocalSource(adapter.repository, options=options)


async def discover(
    spec: LoraAdapterSpec,
    *,
    namespace: str,
    credentials: SourceCredentials | None,
    options: SourceOptions | None = None,
) -> Discovery:
    """The adapters `spec.adapterSource` selects (see module doc); raises SourceError."""
    source = spec.adapter_source
    started = time.monotonic()
    try:
        found = await _discover(spec, namespace=namespace, credentials=credentials,
                                options=options or SourceOptions())
    except SourceError as exc:
        metrics.DISCOVERIES.labels(source.type.value, exc.reason).inc()
        log.warning("sources.discovery_failed", namespace=namespace,
                    source_type=source.type.value, repository=source.repository,
                    reason=exc.reason, error=exc.message)
        raise
    finally:
        metrics.DISCOVERY_SECONDS.labels(source.type.value).observe(time.monotonic() - started)
    metrics.DISCOVERIES.labels(source.type.value, "ok").inc()
    return found


async def _discover(
    spec: LoraAdapterSpec,
    *,
    namespace: str,
    credentials: SourceCredentials | None,
    options: SourceOptions,
) -> Discovery:
    source = spec.adapter_source
    reader = open_source(source, credentials=credentials, options=options)
    try:
        candidates = await reader.candidates()
        selection = select(candidates, source)
        if not selection.chosen and not selection.errors:
            found = len(candidates)
            where = f"{source.type.value} repository {source.repository!r}"
            if found:
                raise NoAdaptersMatch(
                    f"{where} holds {found} adapter(s) but none is selected by "
                    f"{describe_selectors(source)}"
                )
            raise NoAdaptersMatch(f"{where} holds no folder with {CONFIG_FILE}")
        sem = asyncio.Semaphore(max(1, options.concurrency))
        endpoint = reader.endpoint
        secrets = credentials.secrets() if credentials else ()

        async def inspect(name: str, cand: Candidate) -> DiscoveredAdapter | AdapterError:
            async with sem:
                return await _inspect(
                    reader, name, cand, spec=spec, endpoint=endpoint, secrets=secrets,
                )

        results = await asyncio.gather(
            *(inspect(n, c) for n, c in selection.chosen), return_exceptions=True
        )
    finally:
        await reader.aclose()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    adapters = tuple(r for r in results if isinstance(r, DiscoveredAdapter))
    errors = tuple(selection.errors) + tuple(r for r in results if isinstance(r, AdapterError))
    log.info(
        "sources.discovered", namespace=namespace, source_type=source.type.value,
        repository=source.repository, adapters=len(adapters), errors=len(errors),
        capped=selection.capped, total_found=selection.total_found,
    )
    return Discovery(
        adapters=adapters, errors=tuple(sorted(errors, key=lambda e: (e.name, e.reason))),
        capped=selection.capped, total_found=selection.total_found, notes=reader.notes,
    )


async def _inspect(
    reader: SourceReader,
    name: str,
    cand: Candidate,
    *,
    spec: LoraAdapterSpec,
    endpoint: str | None,
    secrets: tuple[str, ...] = (),
) -> DiscoveredAdapter | AdapterError:
    """One chosen candidate, checked; whatever goes wrong is this adapter's failure alone.

    This is the per-adapter boundary: a SourceError that is not retryable, and any other error
    (a config that crashes a parser, a reader's bug), becomes an AdapterError of this adapter, so
    the other adapters of the source are still discovered. Retryable errors (the source went away)
    fail the whole discovery, so no adapter is dropped because of a blip.
    """
    try:
        return await _examine(reader, name, cand, spec=spec, endpoint=endpoint)
    except SourceError as exc:
        if exc.retryable:
            raise
        return AdapterError(name=name, reason=exc.reason, message=exc.message,
                            location=cand.location)
    except Exception as exc:
        text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "", secrets)
        detail = f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
        log.warning("sources.inspect_failed", location=cand.location, error=detail,
                    where="".join(traceback.format_tb(exc.__traceback__)[-2:]))
        return AdapterError(
            name=name, reason=InvalidAdapterConfig.reason, location=cand.location,
            message=f"{cand.location}: reading the adapter failed ({detail}); check its "
            f"{CONFIG_FILE} and files",
        )


async def _examine(
    reader: SourceReader,
    name: str,
    cand: Candidate,
    *,
    spec: LoraAdapterSpec,
    endpoint: str | None,
) -> DiscoveredAdapter | AdapterError:
    """Resolve one candidate, read and check its config (raises for a problem)."""
    source = spec.adapter_source
    cand = await reader.resolve(cand)
    files = cand.files or ()
    _check_not_linked(cand)
    problem = _weights_problem(name, cand, files, allow_pickle=source.allow_pickle_weights)
    if problem is not None:
        return problem
    raw = await reader.read_file(cand, CONFIG_FILE, max_bytes=_config_limit(cand, files))
    try:
        config = parse_adapter_config(raw)
    except InvalidAdapterConfig as exc:
        raise InvalidAdapterConfig(f"{cand.location}/{CONFIG_FILE}: {exc.message}") from None
    if not base_model_matches(config.base_model_name_or_path, spec.base_model):
        raise BaseModelMismatch(
            f"{cand.location} was trained for {config.base_model_name_or_path!r}, but "
            f"spec.baseModel is {spec.base_model!r}"
        )
    ids_complete = all(f.sha256 or f.etag or f.mtime_ns is not None for f in files)
    fallback = "" if ids_complete else (cand.revision or "")
    return DiscoveredAdapter(
        name=name,
        source_type=source.type,
        location=cand.location,
        version=content_version(files, fallback=fallback),
        files=files,
        config=config,
        repository=cand.repository,
        subfolder=cand.subfolder,
        revision=cand.revision,
        endpoint=endpoint,
        region=source.region if source.type is SourceType.S3 else None,
    )


def _check_not_linked(cand: Candidate) -> None:
    """Raise when the config or a weight file vLLM would load is a link or special file: vLLM
    would follow it, while the controller lists, sizes and reads only regular files."""
    linked = [n for n in (CONFIG_FILE, *WEIGHT_FILES) if n in cand.skipped]
    if not linked:
        return
    error = InvalidAdapterConfig if linked[0] == CONFIG_FILE else AdapterWeightsLinked
    raise error(
        f"{cand.location}/{linked[0]} is a symbolic link or special file: links are not followed "
        f"in a local source; put the file itself there"
    )


def _weights_problem(
    name: str, cand: Candidate, files: tuple[AdapterFile, ...], *, allow_pickle: bool
) -> AdapterError | None:
    """Why the weight file vLLM would load is missing or refused, or None when it is fine."""
    chosen = weights_file(files)
    if chosen is None:
        return AdapterError(
            name=name, reason=ADAPTER_WEIGHTS_MISSING, location=cand.location,
            message=f"{cand.location} has no weight file vLLM loads ({', '.join(WEIGHT_FILES)})",
        )
    if chosen.path in PICKLE_WEIGHT_FILES and not allow_pickle:
        return AdapterError(
            name=name, reason=PICKLE_WEIGHTS_NOT_ALLOWED, location=cand.location,
            message=f"{cand.location} has only {chosen.path}, a pickle that vLLM loads with "
            f"torch.load (unpickling untrusted data can run code): convert it to "
            f"adapter_model.safetensors, or set adapterSource.allowPickleWeights: true if you "
            f"trust its author",
        )
    return None


def _config_limit(cand: Candidate, files: tuple[AdapterFile, ...]) -> int:
    """The bytes a read of the config may return: its listed size, refused above the maximum."""
    listed = next((f.size for f in files if f.path == CONFIG_FILE), MAX_CONFIG_BYTES)
    if listed > MAX_CONFIG_BYTES:
        raise InvalidAdapterConfig(
            f"{cand.location}/{CONFIG_FILE} is {listed} bytes; a config may be at most "
            f"{MAX_CONFIG_BYTES} bytes (1 MiB)"
        )
    return listed
