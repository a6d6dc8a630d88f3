"""Label selectors, validated server-side as Kubernetes validates its own LabelSelector."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from lora_controller.api.base import ApiModel
from lora_controller.api.base import rules as _rules

_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY_RE = f"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_KEY_WORDS = ("an optional DNS subdomain prefix of at most 253 characters and '/', then a "
                   "name of at most 63 letters, digits, '-', '_' or '.' that starts and ends with "
                   "a letter or digit (e.g. app.kubernetes.io/name)")
LABEL_VALUE_WORDS = ("must be a label value: empty, or at most 63 letters, digits, '-', '_' or '.' "
                     "that start and end with a letter or digit")


def _label_key_rule(var: str) -> str:
    return (f"{var}.matches('{LABEL_KEY_RE}') && "
            f"(!{var}.contains('/') || {var}.indexOf('/') <= 253)")


_LABEL_VALUE_SCHEMA = {"type": "string", "maxLength": 63, **_rules(
    (f"self.matches('{LABEL_VALUE_RE}')", LABEL_VALUE_WORDS))}


class LabelSelectorRequirement(ApiModel):
    """One set-based requirement, validated as Kubernetes validates a LabelSelector's."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("self.operator in ['Exists', 'DoesNotExist'] || (has(self.values) && "
         "size(self.values) > 0)",
         "values must be given (non-empty) when operator is In or NotIn", ".values"),
        ("self.operator in ['In', 'NotIn'] || !has(self.values) || size(self.values) == 0",
         "values must be empty when operator is Exists or DoesNotExist", ".values"),
    ))

    key: str = Field(
        min_length=1, max_length=317, description="The label key the selector applies to.",
        json_schema_extra=_rules((_label_key_rule("self"),
                                  f"key must be a label key: {LABEL_KEY_WORDS}")),
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] | None = Field(
        default=None, max_length=256,
        description="Values for In and NotIn (at least one); none for Exists and DoesNotExist.",
        json_schema_extra={"items": _LABEL_VALUE_SCHEMA},
    )


class LabelSelector(ApiModel):
    """A Kubernetes label selector (matchLabels and matchExpressions are ANDed)."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a pod must carry, all of them.",
        json_schema_extra={"maxProperties": 64, "additionalProperties": _LABEL_VALUE_SCHEMA,
                           **_rules((f"self.all(k, size(k) <= 317 && {_label_key_rule('k')})",
                                     f"matchLabels keys must be label keys: {LABEL_KEY_WORDS}"))},
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=64,
        description="Set-based requirements a pod's labels must meet, all of them.",
    )
