"""Real servers for the storage and cluster tests, on loopback, each in its own process group and stopped
after: an S3 API (moto's server, which Ray's own storage tests use) and Ray nodes (`ray start --block`)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGKILL the process group `proc` leads, and wait until none of it is left."""
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(proc.pid), f"process group {proc.pid} outlived SIGKILL"


@dataclass
class S3Server:
    """moto's S3 server on loopback, with credentials of its own (the secret is grepped for in every file a
    run writes: it must never be there)."""

    port: int = field(default_factory=free_port)
    secret: str = field(default_factory=lambda: f"rlgraftsecret{uuid.uuid4().hex}")
    proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "rlgrafttestkey", "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}

    def start(self, log: Path) -> S3Server:
        self.proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not answers(self.port):
            assert self.proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id="rlgrafttestkey", aws_secret_access_key=self.secret)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Every object under a prefix -> sha256 of its content."""
        client, out = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"]] = hashlib.sha256(body).hexdigest()
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            assert not answers(self.port)


@dataclass
class RayNode:
    """One raylet started with `ray start --block` (the head, or a node joining it), in its own process group."""

    proc: subprocess.Popen
    port: int | None = None

    @classmethod
    def head(cls, log: Path, env: dict[str, str], num_cpus: int = 0) -> RayNode:
        port = free_port()
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
                                 f"--num-cpus={num_cpus}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                                 "--disable-usage-stats"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        deadline = time.monotonic() + 90
        while not answers(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        return cls(proc, port)

    @classmethod
    def worker(cls, address: str, log: Path, env: dict[str, str], num_cpus: int = 2,
               resources: str | None = None) -> RayNode:
        args = [str(BIN / "ray"), "start", f"--address={address}", "--block", f"--num-cpus={num_cpus}",
                "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        if resources:
            args.append(f"--resources={resources}")
        return cls(subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                                    env=env))

    def stop(self) -> None:
        stop_group(self.proc)
