"""The s3 state backend against the moto server: each test gets its own prefix in the account's bucket."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from state_backends import BackendFactory


def s3_factory(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """`aws_account` resets moto and creates its bucket; the moto_server fixture puts the fake keys in os.environ."""
    account = request.getfixturevalue("aws_account")
    server, bucket = account.server, account.bucket
    prefix = f"state-{uuid.uuid4().hex[:12]}"
    s3 = server.client("s3")

    def url(stack: str) -> str:
        return f"s3://{bucket}/{prefix}?region={server.region}&endpoint_url={server.url}"

    def raw() -> bytes:
        keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", ())]
        return b"".join(key.encode() + s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys)

    return BackendFactory("s3", url, raw, shared_location=True)
