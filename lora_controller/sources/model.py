"""The values the sources layer hands to the rest of the controller: what discovery found.

Everything here is a frozen dataclass: a `DiscoveredAdapter` is a fact about one adapter version
(its name, where it lives, the exact files that make it up and what its adapter_config.json says),
so the reconciler can compare, hash and keep them without fear of them changing under it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lora_controller.api.types import SourceType
from lora_controller.sources.errors import AdapterError

# The weight files vLLM's LoRAModel.from_local_checkpoint loads, in its order: the first present
# is the one loaded. .bin and .pt are pickles (torch.load).
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")
PICKLE_WEIGHT_FILES = frozenset(WEIGHT_FILES[1:])
VERSION_RE = r"^[0-9a-f]{16}$"  # what content_version returns
CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class AdapterFile:
    """One file of an adapter folder, as the source reports it.

    `path` is relative to the adapter folder and has no '/' (adapters are flat folders). `etag` is
    the S3 ETag or the HF git blob id; `sha256` the HF LFS content hash; `mtime_ns` the local mtime.
    """

    path: str
    size: int
    etag: str | None = None
    sha256: str | None = None
    mtime_ns: int | None = None

    @property
    def is_weights(self) -> bool:
        """One of the files vLLM loads weights from (not training_args.bin, optimizer.pt, ...)."""
        return self.path in WEIGHT_FILES


def weights_file(files: tuple[AdapterFile, ...]) -> AdapterFile | None:
    """The weight file vLLM would load from these files, or None when there is none."""
    by_name = {f.path: f for f in files}
    return next((by_name[name] for name in WEIGHT_FILES if name in by_name), None)


@dataclass(frozen=True)
class AdapterConfig:
    """The fields of adapter_config.json the controller uses."""

    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] | str
    base_model_name_or_path: str | None
    rank: int  # max(r, rank_pattern values): what --max-lora-rank must allow


@dataclass(frozen=True)
class DiscoveredAdapter:
    """One adapter version selected by discovery, with everything staging and scheduling need.

    `repository` and `subfolder` locate the folder in its source (HF repo id, s3://bucket/key
    folder, local directory); `revision` is the HF commit the files were listed at; `endpoint` and
    `region` are the HF endpoint or the S3 endpoint/region the files were listed through.
    """

    name: str
    source_type: SourceType
    location: str
    version: str
    files: tuple[AdapterFile, ...]
    config: AdapterConfig
    repository: str
    subfolder: str = ""
    revision: str | None = None
    endpoint: str | None = None
    region: str | None = None

    @property
    def weights_bytes(self) -> int:
        """The size of the one weight file vLLM loads (safetensors first, then .bin, then .pt)."""
        chosen = weights_file(self.files)
        return chosen.size if chosen is not None else 0

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Discovery:
    """What one discovery run found: the adapters to serve and the per-adapter problems.

    `notes` are sentences about the source as a whole that a person should see in the status
    though nothing failed (e.g. the symbolic links a local source skipped)."""

    adapters: tuple[DiscoveredAdapter, ...]
    errors: tuple[AdapterError, ...] = ()
    capped: bool = False
    total_found: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A folder holding adapter_config.json, before naming, selection and config checks.

    `segments` is its path relative to the source root (empty: the root itself, named `root_name`).
    `files` is None until the reader resolves it (an org listing knows repos, not their files).
    """

    segments: tuple[str, ...]
    root_name: str
    repository: str
    location: str
    files: tuple[AdapterFile, ...] | None = None
    revision: str | None = None
    skipped: tuple[str, ...] = ()  # entries of the folder that are links or special files

    @property
    def subfolder(self) -> str:
        return "/".join(self.segments)


@dataclass(frozen=True)
class SourceOptions:
    """Timeouts and concurrency of source calls (seconds)."""

    request_timeout: float = 30.0
    listing_timeout: float = 120.0
    download_timeout: float = 1800.0
    concurrency: int = 8
    hf_cache_dir: str | None = None


def content_version(files: tuple[AdapterFile, ...], *, fallback: str = "") -> str:
    """A short digest of the files' identities: changes when any file's content changes."""
    digest = hashlib.sha256(fallback.encode())
    for f in sorted(files, key=lambda f: f.path):
        ident = f.sha256 or f.etag or (str(f.mtime_ns) if f.mtime_ns is not None else "")
        digest.update(f"{f.path}\0{f.size}\0{ident}\n".encode())
    return digest.hexdigest()[:16]
