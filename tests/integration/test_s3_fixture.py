from __future__ import annotations

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.s3 import s3_client, split_s3_uri


@pytest.mark.integration
def test_s3_client_talks_to_local_s3_api(s3_bucket: str) -> None:
    client = s3_client(load_settings())
    client.put_object(Bucket=s3_bucket, Key="a/b.jsonl", Body=b"{}\n")
    body = client.get_object(Bucket=s3_bucket, Key="a/b.jsonl")["Body"].read()
    assert body == b"{}\n"


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        split_s3_uri("/local/path")
