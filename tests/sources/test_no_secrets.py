"""No token or key ever shows in a log line, an exception, an error or a repr.

Every failure path that handles credentials is driven for real (wrong, unknown and unapproved
tokens; unknown keys, wrong secrets, missing keys; unreachable services; failed staging), and all
text it produces is scanned: structlog events, stdlib log records at INFO and above (what a
controller runs with), exception str/repr/tracebacks, per-adapter error messages and reprs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog

from lora_controller.api.types import CredentialsSecretRef, SourceType
from lora_controller.sources.credentials import SourceCredentials, credentials_from_secret
from lora_controller.sources.discovery import discover, open_source
from lora_controller.sources.errors import SourceError, redact
from lora_controller.sources.model import Discovery, SourceOptions
from lora_controller.sources.store import AdapterStore, RetryPolicy
from tests.sources.helpers import spec
from tests.sources.hub_server import HubServer
from tests.sources.s3_server import REGION, MotoS3, free_port
from tests.support.adapters import adapter_files, under
from tests.support.secrets import credential

HF_SECRET = credential("hf_SeCrEt_token_0123456789abcdef")
HF_APPROVED = credential("hf_Approved_token_fedcba9876543210")
AWS_KEY_ID = "AKIASECRETKEYID12345"
AWS_SECRET = credential("wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY")
AWS_SESSION = credential("FwoGZXIvYXdzEJr//////////SESSIONTOKEN")


class Scanner:
    """Collects every piece of text the code under test produced."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.outcomes: list[str] = []

    def add_exception(self, exc: BaseException) -> None:
        self.texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        self.outcomes.append(getattr(exc, "reason", type(exc).__name__))

    def add_discovery(self, found: Discovery) -> None:
        self.texts.append(repr(found))
        self.texts += [e.message for e in found.errors]
        self.outcomes += [e.reason for e in found.errors]

    async def run(self, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            result = await fn()
        except SourceError as exc:
            self.add_exception(exc)
        else:
            if isinstance(result, Discovery):
                self.add_discovery(result)


    def leaks(self, secrets: list[str]) -> list[str]:
        return [s for s in secrets for t in self.texts if s in t]


@pytest.fixture
def scanner(caplog: pytest.LogCaptureFixture) -> Any:
    scan = Scanner()
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as events:
        yield scan
    scan.texts += [repr(e) for e in events]
    scan.texts += [r.getMessage() for r in caplog.records]
    scan.texts += [str(r.args) for r in caplog.records]


async def test_hf_failures_never_show_the_token(
    hub: HubServer, options: SourceOptions, tmp_path: Path, scanner: Scanner
) -> None:
    hub.add_token(HF_SECRET)
    hub.add_repo("org/private", adapter_files(), private=True, tokens={HF_APPROVED})
    hub.add_repo("org/gated", under("a", adapter_files()), gated=True, tokens={HF_APPROVED})
    hub.add_repo("org/public", adapter_files())
    mine = SourceCredentials(secret_name="hf", hf_token=HF_SECRET)
    revoked = SourceCredentials(secret_name="hf", hf_token=HF_SECRET + "x")
    approved = SourceCredentials(secret_name="hf", hf_token=HF_APPROVED)
    scanner.texts += [repr(mine), str(mine), repr(open_source(
        spec("huggingface", "org/public").adapter_source, credentials=mine, options=options))]

    async def find(repo: str, creds: SourceCredentials, **kw: Any) -> Discovery:
        return await discover(spec("huggingface", repo, **kw), namespace="ns",
                              credentials=creds, options=options)

    await scanner.run(lambda: find("org/private", mine))         # not granted: not found
    await scanner.run(lambda: find("org/public", revoked))       # unknown token: 401
    await scanner.run(lambda: find("org/gated", mine))           # not approved: 403 per adapter
    await scanner.run(lambda: find("org/none", mine))            # unknown repository
    await scanner.run(lambda: find("org/public", mine, revision="nope"))
    await scanner.run(lambda: find("org", mine, pattern="zzz"))  # nothing matches
    good = (await find("org/private", approved)).adapters[0]
    store = AdapterStore(tmp_path, options=options, retry=RetryPolicy(attempts=1))
    hub.drop_after = 0  # staging with the token fails mid-download
    await scanner.run(lambda: store.stage(good, namespace="n", cr="c", credentials=approved))
    hub.drop_after = None
    await scanner.run(lambda: store.stage(
        dataclasses.replace(good, version="0" * 16), namespace="n", cr="c", credentials=mine))
    await hub.go_down()
    await scanner.run(lambda: find("org/public", mine))          # hub unreachable
    assert scanner.outcomes == [
        "SourceNotFound", "AccessDenied", "AccessDenied", "SourceNotFound", "SourceNotFound",
        "NoAdaptersMatch", "SourceUnreachable", "SourceNotFound", "SourceUnreachable",
    ]
    assert scanner.leaks([HF_SECRET, HF_APPROVED]) == []
    # the token did reach the hub (so the scan is not vacuous)
    assert any("org/private" in p for _, p in hub.requests)


@pytest.mark.usefixtures("s3_env")
async def test_s3_failures_never_show_the_keys(
    moto_s3: MotoS3, options: SourceOptions, tmp_path: Path, scanner: Scanner
) -> None:
    b = moto_s3.bucket()
    moto_s3.put_adapter(b, "p/a", adapter_files())
    fake = SourceCredentials(secret_name="aws", aws_access_key_id=AWS_KEY_ID,
                             aws_secret_access_key=AWS_SECRET, aws_session_token=AWS_SESSION)
    wrong_secret = SourceCredentials(secret_name="aws", aws_access_key_id=moto_s3.access_key,
                                     aws_secret_access_key=AWS_SECRET)
    real = SourceCredentials(secret_name="aws", aws_access_key_id=moto_s3.access_key,
                             aws_secret_access_key=moto_s3.secret_key)
    scanner.texts += [repr(fake), str(fake)]
    sp = spec("s3", f"s3://{b}/p", endpoint=moto_s3.endpoint, region=REGION)
    dead = spec("s3", f"s3://{b}/p", endpoint=f"http://127.0.0.1:{free_port()}")

    async def find(s: Any, creds: SourceCredentials) -> Discovery:
        return await discover(s, namespace="ns", credentials=creds, options=options)

    with moto_s3.auth():
        await scanner.run(lambda: find(sp, fake))
        await scanner.run(lambda: find(sp, wrong_secret))
    await scanner.run(lambda: find(dead, fake))
    await scanner.run(lambda: find(spec("s3", "s3://missing-bucket-x/p",
                                        endpoint=moto_s3.endpoint), fake))
    adapter = (await find(sp, real)).adapters[0]
    store = AdapterStore(tmp_path, options=options, retry=RetryPolicy(attempts=1))
    with moto_s3.auth():
        await scanner.run(lambda: store.stage(adapter, namespace="n", cr="c", credentials=fake))
    for data in ({"AWS_ACCESS_KEY_ID": AWS_KEY_ID},
                 {"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_SESSION}):
        try:
            credentials_from_secret(data, ref=CredentialsSecretRef(name="aws"),
                                    source_type=SourceType.S3, namespace="ns")
        except SourceError as exc:
            scanner.add_exception(exc)
    assert scanner.outcomes == [
        "AccessDenied", "AccessDenied", "SourceUnreachable", "SourceNotFound", "AccessDenied",
        "CredentialsMissing", "CredentialsMissing",
    ]
    assert scanner.leaks([AWS_KEY_ID, AWS_SECRET, AWS_SESSION]) == []


def test_redact_replaces_every_secret() -> None:
    text = f"token={HF_SECRET} key={AWS_SECRET} again {HF_SECRET}"
    assert redact(text, [HF_SECRET, AWS_SECRET, ""]) == "token=*** key=*** again ***"


def forms(secret: str) -> list[str]:
    """Every way a secret can be printed: raw, as a str or bytes repr, JSON-escaped,
    percent-encoded, and each line of it (long enough to be telling)."""
    out = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1], json.dumps(secret)[1:-1],
           quote(secret, safe=""), quote_plus(secret)}
    out |= {line for line in re.split(r"[\x00-\x1f\x7f]+", secret) if len(line) >= 6}
    return sorted(out)


LINE_TOKEN = "hf_first_half_4c1d\nsecond_half_e8f2"
TAB_KEY = "wJalrXUtnFEMI\tK7MDENGbPxRfiCY"


@pytest.mark.parametrize("secret", [LINE_TOKEN, TAB_KEY, "tok%en/with+spec ial\r\n\x00end"])
def test_redact_covers_every_form_of_a_secret(secret: str) -> None:
    texts = [f"Illegal header value {('Bearer ' + secret).encode()!r}", f"got {secret!r}",
             json.dumps({"token": secret}), f"https://x/?t={quote(secret, safe='')}",
             f"https://x/?t={quote_plus(secret)}", *secret.splitlines(), secret]
    for text in texts:
        cleaned = redact(text, [secret])
        assert [f for f in forms(secret) if f in cleaned] == [], (text, cleaned)
    assert redact("nothing secret here", [secret]) == "nothing secret here"


async def test_a_token_with_a_line_break_never_shows_in_any_form(
    hub: HubServer, options: SourceOptions, scanner: Scanner
) -> None:
    hub.add_repo("org/public", adapter_files())
    odd = SourceCredentials(secret_name="hf", hf_token=LINE_TOKEN)
    await scanner.run(lambda: discover(spec("huggingface", "org/public"), namespace="ns",
                                       credentials=odd, options=options))
    assert scanner.outcomes, "the discovery neither failed nor reported"
    assert [f for f in forms(LINE_TOKEN) for t in scanner.texts if f in t] == []


@pytest.mark.parametrize(("source_type", "data", "key"), [
    (SourceType.HUGGINGFACE, {"HF_TOKEN": LINE_TOKEN}, "HF_TOKEN"),
    (SourceType.S3, {"AWS_ACCESS_KEY_ID": "AKIA\x00ID", "AWS_SECRET_ACCESS_KEY": "ok"},
     "AWS_ACCESS_KEY_ID"),
    (SourceType.S3, {"AWS_ACCESS_KEY_ID": "AKIAID", "AWS_SECRET_ACCESS_KEY": TAB_KEY},
     "AWS_SECRET_ACCESS_KEY"),
    (SourceType.S3, {"AWS_ACCESS_KEY_ID": "AKIAID", "AWS_SECRET_ACCESS_KEY": "ok",
                     "AWS_SESSION_TOKEN": "Fwo\x7fGZX"}, "AWS_SESSION_TOKEN"),
])
def test_a_credential_with_control_characters_is_refused_without_echo(
    source_type: SourceType, data: dict[str, str], key: str
) -> None:
    with pytest.raises(SourceError) as info:
        credentials_from_secret(data, ref=CredentialsSecretRef(name="creds"),
                                source_type=source_type, namespace="ns")
    assert info.value.reason == "InvalidCredentials" and not info.value.retryable
    assert key in info.value.message and "'creds'" in info.value.message
    value = data[key]
    text = f"{info.value.message} {info.value!r}"
    assert [f for f in forms(value) if f in text] == []
    assert not any(part in text for part in re.split(r"[\x00-\x1f\x7f]+", value) if len(part) > 2)
