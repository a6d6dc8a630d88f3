"""Pydantic models of the LoraAdapter resource: the single source of truth for its schema.

The CRD's OpenAPI schema (crds/) is generated from these models by `hack/gen-crd`, so a field's
name, type, default, description and server-side validation rules (OpenAPI bounds and CEL
`x-kubernetes-validations`) are written once, here. The models parse what the API server returns
leniently: unknown (future) fields are ignored, so an older controller never crashes on a newer
resource.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from lora_controller.api.base import ApiModel as ApiModel
from lora_controller.api.base import Phase as Phase
from lora_controller.api.base import PreemptionPolicy as PreemptionPolicy
from lora_controller.api.base import SourceType as SourceType
from lora_controller.api.base import rules as _rules
from lora_controller.api.selectors import LABEL_KEY_RE as LABEL_KEY_RE
from lora_controller.api.selectors import LABEL_VALUE_RE as LABEL_VALUE_RE
from lora_controller.api.selectors import LabelSelector as LabelSelector
from lora_controller.api.selectors import LabelSelectorRequirement as LabelSelectorRequirement
from lora_controller.api.status import Condition as Condition
from lora_controller.api.status import FailedAdapter as FailedAdapter
from lora_controller.api.status import LoraAdapterStatus as LoraAdapterStatus
from lora_controller.api.status import PodAssignment as PodAssignment

GROUP = "production-stack.vllm-project"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LoraAdapter"
PLURAL = "loraadapters"
SINGULAR = "loraadapter"
SHORT_NAMES = ["lora", "loras"]
FINALIZER = f"{GROUP}/unload-adapters"

PRIORITY_MIN = 0
PRIORITY_MAX = 1_000_000
MAX_ADAPTERS_DEFAULT = 100
MAX_ADAPTERS_LIMIT = 10_000

# An adapter name must be usable as a vLLM `lora_name` and as one folder name.
ADAPTER_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ADAPTER_NAME_MAX = 128
QUANTITY_MESSAGE = "must be a Kubernetes quantity greater than zero, such as 512Mi or 2Gi"


# CEL rules on adapterSource: the repository's form depends on the type.
_S3_REPO = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
_HF_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
_SOURCE_RULES = _rules(
    (
        "!self.repository.matches('[[:cntrl:]]')",
        "repository must not contain control characters (such as a line break or a tab)",
        ".repository",
    ),
    (
        f"self.type != 's3' || self.repository.matches('{_S3_REPO}')",
        "for type s3, repository must be s3://BUCKET or s3://BUCKET/PREFIX "
        "(bucket: 3-63 lowercase letters, digits, '.' or '-')",
        ".repository",
    ),
    (
        f"self.type != 'huggingface' || self.repository.matches('{_HF_REPO}')",
        "for type huggingface, repository must be ORG or ORG/REPO "
        "(letters, digits, '.', '_' or '-')",
        ".repository",
    ),
    (
        "self.type != 'local' || (self.repository.startsWith('/') && "
        "!self.repository.matches('(^|/)[.][.]?(/|$)'))",
        "for type local, repository must be an absolute path (starting with '/') "
        "without '.' or '..' segments",
        ".repository",
    ),
    (
        "self.type == 'huggingface' || !has(self.revision)",
        "revision applies only to type huggingface",
        ".revision",
    ),
    (
        "self.type == 's3' || (!has(self.endpoint) && !has(self.region))",
        "endpoint and region apply only to type s3",
    ),
)


class AdapterSource(ApiModel):
    """Where adapters come from and which of them this resource selects."""

    model_config = ConfigDict(json_schema_extra=_SOURCE_RULES)

    type: SourceType = Field(
        description="Where the adapters live: huggingface (a Hub repository or organisation), "
        "s3 (a bucket and prefix) or local (a path on a volume the vLLM pods mount)."
    )
    repository: str = Field(
        min_length=1, max_length=1024,
        description="huggingface: ORG/REPO (one adapter at the root, or one per sub-folder holding "
        "an adapter_config.json) or ORG (every model repository of that author); s3: "
        "s3://BUCKET/PREFIX (each folder holding an adapter_config.json is one adapter); local: an "
        "absolute path on a volume that the vLLM pods mount at the same path.",
    )
    pattern: str | None = Field(
        default=None, max_length=256,
        description="Optional shell glob on adapter names (e.g. '*alpaca*'). Combined with prefix "
        "and adapters as a conjunction; none of them selects every adapter found.",
    )
    adapters: list[str] | None = Field(
        default=None, max_length=1000,
        description="Optional explicit list of adapter names (folder or repository names) to select.",
        json_schema_extra={
            "items": {
                "type": "string", "minLength": 1, "maxLength": ADAPTER_NAME_MAX,
                **_rules((
                    f"self.matches('{ADAPTER_NAME_RE}')",
                    "adapter names must start with a letter or digit and contain only letters, "
                    "digits, '.', '_' or '-' (no '/', no '..')",
                )),
            }
        },
    )
    prefix: str | None = Field(
        default=None, max_length=ADAPTER_NAME_MAX,
        description="Optional prefix that adapter names must start with (e.g. 'lora-').",
    )
    max_adapters: int = Field(
        default=MAX_ADAPTERS_DEFAULT, ge=1, le=MAX_ADAPTERS_LIMIT,
        description="Upper bound on how many adapters discovery selects, so a broad pattern never "
        "floods a cluster. When more match, the first ones by name are kept and the status says so.",
    )
    revision: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="huggingface only: the branch, tag or commit to read (default: main).",
    )
    endpoint: str | None = Field(
        default=None, max_length=1024, pattern=r"^https?://[^\s/]+(/.*)?$",
        description="s3 only: the endpoint URL of an S3-compatible store (e.g. http://minio:9000).",
    )
    region: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="s3 only: the bucket's region (default: the AWS credential chain's).",
    )
    allow_pickle_weights: bool = Field(
        default=False,
        description="Accept adapters whose only weights are adapter_model.bin or .pt: pickles "
        "that vLLM loads with torch.load, where untrusted data can run code in the vLLM pod. "
        "false (the default): such an adapter fails with PickleWeightsNotAllowed; convert it to "
        "adapter_model.safetensors, or set true only for a source whose authors you trust.",
    )


class CredentialsSecretRef(ApiModel):
    """A Secret in the resource's namespace holding the source's credentials."""

    model_config = ConfigDict(json_schema_extra=_rules((
        "!has(self.keys) || self.keys.all(k, k in ['HF_TOKEN', 'AWS_ACCESS_KEY_ID', "
        "'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'])",
        "keys may only rename HF_TOKEN, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or "
        "AWS_SESSION_TOKEN",
    )))

    name: str = Field(
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of a Secret in this resource's namespace. Keys read: HF_TOKEN "
        "(huggingface); AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optional AWS_SESSION_TOKEN "
        "(s3). Without a Secret, s3 uses the default AWS credential chain (IRSA, instance role).",
    )
    keys: dict[str, str] | None = Field(
        default=None,
        description="Optional renaming of the keys read from the Secret, e.g. "
        "{HF_TOKEN: token}: the value of the Secret's key 'token' is used as HF_TOKEN.",
        json_schema_extra={"maxProperties": 4},
    )


# Kubernetes' own label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue):
# a key is an optional DNS-subdomain prefix (at most 253 characters) and '/', then a name of at
# most 63 characters; a value is empty or a name. `[.]`, not `\.`: these go into CEL strings.
class ScalingMode(StrEnum):
    FIXED = "Fixed"
    DEMAND = "Demand"


DEFAULT_TARGET_RPS = 5.0
DEFAULT_MAX_CHANGES = 4


class Scaling(ApiModel):
    """How many pods load each adapter: a fixed count, or as many as its demand needs."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
         "minReplicas must not be greater than maxReplicas", ".minReplicas"),
        ("self.mode == 'Demand' || (!has(self.minReplicas) && !has(self.maxReplicas) && "
         "!has(self.targetRequestsPerSecond))",
         "minReplicas, maxReplicas and targetRequestsPerSecond apply to mode Demand only; with "
         "mode Fixed set deploymentConfig.replicas", ".mode"),
    ))

    mode: ScalingMode = Field(
        default=ScalingMode.FIXED,
        description="Fixed (the default): each adapter on deploymentConfig.replicas pods (absent: "
        "every eligible pod). Demand: each adapter on as many pods as its request rate needs "
        "(targetRequestsPerSecond per replica), between minReplicas and maxReplicas; the rate "
        "comes from routers (POST /v1/usage), router lookups and what the vLLM pods report.",
    )
    min_replicas: int | None = Field(
        default=None, ge=0, le=10_000,
        description="Mode Demand: the fewest pods an adapter is kept on (default 1). 0 is allowed "
        "only with loadOnStartup: false: an idle adapter is then unloaded after its cool-down "
        "and loaded again on the first router ask.",
    )
    max_replicas: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Mode Demand: the most pods an adapter is put on (default: every eligible pod).",
    )
    target_requests_per_second: float | None = Field(
        default=None, le=1_000_000,
        description=f"Mode Demand: the request rate one replica should carry (default "
        f"{DEFAULT_TARGET_RPS:g}). Replicas = ceil(rate / target), within minReplicas..maxReplicas.",
        json_schema_extra=_rules(("self > 0.0", "targetRequestsPerSecond must be positive")),
    )
    max_changes_per_reconcile: int | None = Field(
        default=None, ge=1, le=1_000,
        description=f"Mode Demand: how many replicas (added plus removed) the resource's adapters "
        f"may change by in one reconcile, to bound loads and unloads (default "
        f"{DEFAULT_MAX_CHANGES}).",
    )


class DeploymentConfig(ApiModel):
    """Which vLLM pods may serve the adapters, and when they are loaded."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("!has(self.scaling) || !has(self.scaling.minReplicas) || self.scaling.minReplicas > 0 || "
         "(has(self.loadOnStartup) && !self.loadOnStartup)",
         "scaling.minReplicas 0 requires loadOnStartup: false (an adapter scaled to zero is loaded "
         "again on the first router ask)", ".scaling.minReplicas"),
        ("!has(self.scaling) || !has(self.scaling.mode) || self.scaling.mode != 'Demand' || "
         "!has(self.replicas)",
         "replicas applies to scaling mode Fixed; with mode Demand set scaling.minReplicas and "
         "scaling.maxReplicas", ".replicas"),
    ))

    load_on_startup: bool = Field(
        default=True,
        description="true: load the adapters on their pods as soon as they are placed. false: "
        "place and stage them, but load one only when a router asks for it through the router API "
        "(GET /v1/adapters/{name}/pods?ensure=true).",
    )
    pod_selector: LabelSelector | None = Field(
        default=None,
        description="vLLM pods (in this namespace) that may serve these adapters. Without it, every "
        "pod in the namespace whose vLLM serves baseModel with LoRA enabled is a candidate.",
    )
    replicas: int | None = Field(
        default=None, ge=1, le=10_000,
        description="How many pods load each adapter. Absent: every eligible pod.",
    )
    scaling: Scaling | None = Field(
        default=None,
        description="Fixed replicas (the default) or replicas that follow each adapter's demand.",
    )

    def demand_scaled(self) -> bool:
        return self.scaling is not None and self.scaling.mode is ScalingMode.DEMAND


class ResourceRequirements(ApiModel):
    memory: int | str | None = Field(
        default=None,
        description="Memory one adapter takes on a vLLM pod: a Kubernetes quantity (int-or-string) "
        "such as 2Gi or 512M, or a number of bytes. Absent: the size of its weight file, measured.",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            **_rules((
                "type(self) == int ? self > 0 : (size(self) <= 64 && isQuantity(self) && "
                "quantity(self).isGreaterThan(quantity('0')))",
                QUANTITY_MESSAGE,
            )),
        },
    )


class SchedulingConfig(ApiModel):
    """How adapters compete for pod capacity."""

    priority: int = Field(
        default=0, ge=PRIORITY_MIN, le=PRIORITY_MAX,
        description=f"Higher is placed first ({PRIORITY_MIN} to {PRIORITY_MAX}).",
    )
    preemption_policy: PreemptionPolicy = Field(
        default=PreemptionPolicy.LOWER_PRIORITY,
        description="LowerPriority: may evict adapters of strictly lower priority to make room. "
        "None: never evicts.",
    )
    resource_requirements: ResourceRequirements | None = Field(
        default=None, description="Resources one adapter takes on a pod."
    )


class LoraAdapterSpec(ApiModel):
    """The adapters wanted, where they come from and where they may run."""

    base_model: str = Field(
        min_length=1, max_length=512,
        description="The base model the adapters were trained for, as the vLLM pods serve it "
        "(--model or --served-model-name), e.g. meta-llama/Llama-2-70b-hf.",
    )
    adapter_source: AdapterSource = Field(description="Where the adapters come from.")
    credentials_secret_ref: CredentialsSecretRef | None = Field(
        default=None, description="Credentials for the source, from a Secret in this namespace."
    )
    deployment_config: DeploymentConfig | None = Field(
        default=None, description="Which pods serve the adapters and when they are loaded."
    )
    scheduling_config: SchedulingConfig | None = Field(
        default=None, description="Priority, preemption and resources."
    )

    # Defaults the API server applies are mirrored here for objects built in Python.
    def deployment(self) -> DeploymentConfig:
        return self.deployment_config or DeploymentConfig()

    def scheduling(self) -> SchedulingConfig:
        return self.scheduling_config or SchedulingConfig()


class ObjectMeta(ApiModel):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


class LoraAdapter(ApiModel):
    """A LoraAdapter resource as the API server returns it."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: LoraAdapterSpec
    status: LoraAdapterStatus | None = None

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"

    def status_patch(self, status: LoraAdapterStatus) -> dict[str, Any]:
        """A merge patch body for the /status subresource that sets the whole status."""
        return {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
