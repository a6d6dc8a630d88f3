"""A real S3 API on loopback: moto's server (ThreadedMotoServer), reached by s3fs and boto3.

moto's in-process mock does not intercept aiobotocore, so tests talk HTTP to a server thread.
`MotoS3.start()` picks a free port and creates an IAM user whose keys the tests use; `auth()`
switches moto's IAM enforcement on for one block (it is process-global in moto), so wrong keys get
the 403 answers real S3 gives.

    s3 = MotoS3.start()
    s3.put_adapter("bucket", "prefix/adapter-a", adapter_files())
    ...
    s3.stop()
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from lora_controller.devenv.controlplane import free_port
from tests.support.secrets import credential

REGION = "us-east-1"
FULL_S3_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}],
})


@dataclass
class MotoS3:
    server: ThreadedMotoServer
    endpoint: str
    access_key: str
    secret_key: str

    @classmethod
    def start(cls) -> MotoS3:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="admin", aws_secret_access_key="admin")
        user = f"lora-tester-{uuid.uuid4().hex[:8]}"  # moto state is per process: unique names
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3",
                            PolicyDocument=FULL_S3_POLICY)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return cls(server=server, endpoint=endpoint, access_key=key["AccessKeyId"],
                   secret_key=credential(key["SecretAccessKey"]))

    def stop(self) -> None:
        self.server.stop()

    def client(self, **kwargs: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=kwargs.pop("key", self.access_key),
            aws_secret_access_key=kwargs.pop("secret", self.secret_key), **kwargs,
        )

    def bucket(self, prefix: str = "b") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, files: Mapping[str, bytes]) -> None:
        c = self.client()
        for key, data in files.items():
            c.put_object(Bucket=bucket, Key=key, Body=data)

    def put_adapter(self, bucket: str, folder: str, files: Mapping[str, bytes]) -> None:
        """Write an adapter's files (name -> bytes) below `folder` in `bucket`."""
        folder = folder.strip("/")
        self.put(bucket, {(f"{folder}/{k}" if folder else k): v for k, v in files.items()})

    def delete(self, bucket: str, keys: list[str]) -> None:
        c = self.client()
        for key in keys:
            c.delete_object(Bucket=bucket, Key=key)

    def _set_auth(self, count: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count.encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    @contextlib.contextmanager
    def auth(self) -> Iterator[None]:
        """Enforce IAM authentication (unknown keys, bad signatures -> 403) inside the block."""
        self._set_auth("0")
        try:
            yield
        finally:
            self._set_auth("inf")
