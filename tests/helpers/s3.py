"""A real S3 server for the tests: moto's, in server mode, on a free port of 127.0.0.1 (no network)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path


@contextlib.contextmanager
def s3_server():
    """Yields the environment that points AWS clients (pyarrow's, boto3's) at the server."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    finally:
        server.stop()


def upload(env: dict, bucket: str, files: dict[str, bytes | Path]) -> None:
    """Create ``bucket`` and put each ``key: bytes or file``."""
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name=env["AWS_DEFAULT_REGION"])
    client.create_bucket(Bucket=bucket)
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body.read_bytes() if isinstance(body, Path) else body)
