"""Credentials for a source, read from the Secret that credentialsSecretRef names.

Only the keys the source type needs are read (HF_TOKEN for huggingface; AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and optional AWS_SESSION_TOKEN for s3), through the ref's renaming map. The
values live in a `SourceCredentials` whose repr shows which keys are set, never their values, so a
credentials object can be logged or put in an exception without leaking anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lora_controller.api.types import CredentialsSecretRef, SourceType
from lora_controller.core.redaction import register_secret
from lora_controller.sources.errors import (
    CredentialsMissing,
    InvalidCredentials,
    has_control_characters,
    secret_forms,
)

HF_TOKEN = "HF_TOKEN"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"

_REQUIRED: dict[SourceType, tuple[str, ...]] = {
    SourceType.HUGGINGFACE: (HF_TOKEN,),
    SourceType.S3: (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY),
    SourceType.LOCAL: (),
}
_OPTIONAL: dict[SourceType, tuple[str, ...]] = {
    SourceType.HUGGINGFACE: (),
    SourceType.S3: (AWS_SESSION_TOKEN,),
    SourceType.LOCAL: (),
}


@dataclass(frozen=True)
class SourceCredentials:
    """Secret values for one source; repr and str never show them."""

    secret_name: str = ""
    hf_token: str | None = field(default=None, repr=False)
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """Every value set, for redacting text that may contain one."""
        values = (self.hf_token, self.aws_access_key_id, self.aws_secret_access_key,
                  self.aws_session_token)
        return tuple(v for v in values if v)

    def __repr__(self) -> str:
        present = [name for name, value in (
            (HF_TOKEN, self.hf_token), (AWS_ACCESS_KEY_ID, self.aws_access_key_id),
            (AWS_SECRET_ACCESS_KEY, self.aws_secret_access_key),
            (AWS_SESSION_TOKEN, self.aws_session_token),
        ) if value]
        return f"SourceCredentials(secret={self.secret_name!r}, keys={present})"

    __str__ = __repr__


def credentials_from_secret(
    secret_data: Mapping[str, str] | None,
    *,
    ref: CredentialsSecretRef,
    source_type: SourceType,
    namespace: str,
) -> SourceCredentials:
    """Pick the keys `source_type` needs out of a Secret's (base64-decoded) data.

    `secret_data` is None when the Secret does not exist. Values are stripped of surrounding
    whitespace (a Secret made from a file often ends with a newline); an empty value counts as
    missing. Raises CredentialsMissing naming the Secret and key, never a value, and
    InvalidCredentials for a value with a control character left inside (a library would refuse
    it as a header and print it).
    """
    if secret_data is None:
        raise CredentialsMissing(
            f"Secret {ref.name!r} (credentialsSecretRef) not found in namespace {namespace!r}: "
            f"create it or remove credentialsSecretRef"
        )
    renames = ref.keys or {}
    values: dict[str, str | None] = {}
    for logical in _REQUIRED[source_type] + _OPTIONAL[source_type]:
        key = renames.get(logical, logical)
        raw = secret_data.get(key)
        value = raw.strip() if raw is not None else None
        if not value:
            value = None
            if logical in _REQUIRED[source_type]:
                shown = key if key == logical else f"{key} (used as {logical})"
                state = "is empty" if raw is not None else "is missing"
                raise CredentialsMissing(
                    f"key {shown} {state} in Secret {ref.name!r} in namespace {namespace!r}: "
                    f"a {source_type.value} source needs "
                    f"{', '.join(_REQUIRED[source_type])}"
                )
        if value is not None and has_control_characters(value):
            shown = key if key == logical else f"{key} (used as {logical})"
            raise InvalidCredentials(
                f"key {shown} in Secret {ref.name!r} in namespace {namespace!r} holds a control "
                f"character (such as a line break inside the value), which no credential has: "
                f"write the value again (the controller never shows it)"
            )
        values[logical] = value
    # no log line may show them, whoever logs, in any form a library may print them
    register_secret(*(form for v in values.values() if v for form in secret_forms(v)))
    return SourceCredentials(
        secret_name=ref.name,
        hf_token=values.get(HF_TOKEN),
        aws_access_key_id=values.get(AWS_ACCESS_KEY_ID),
        aws_secret_access_key=values.get(AWS_SECRET_ACCESS_KEY),
        aws_session_token=values.get(AWS_SESSION_TOKEN),
    )
