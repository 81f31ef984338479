"""Shared fixtures: one real Kafka broker for the session, a fresh lake home per test, and on demand
a real PostgreSQL and an S3 server (tests/services.py)."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (the broker and its controller).

    Picked below the kernel's ephemeral range: a port from that range can be taken by any
    outgoing connection between the pick and the broker's bind (seen once: the demo's broker
    failed with "Address already in use" on its controller port).
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError):
        ephemeral = 32768
    for _ in range(200):
        port = random.randrange(20000, ephemeral - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no free port pair found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(autouse=True)
def sigterm_as_it_was() -> Iterator[None]:
    """A test that runs a Dagster job in this process would leave SIGTERM ignored where the test
    run started with SIGINT ignored (a CI job in the background), and so every process a later
    test started: the build's own guard puts it back after each test."""
    from orchestration.commands.build import sigterm_kept

    with sigterm_kept():
        yield


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Apache Kafka broker, started by the product's own `local_kafka`."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from ingestion import local_kafka

    home = tmp_path_factory.mktemp("broker-home")
    port = free_port_pair()
    saved = {k: os.environ.get(k) for k in ("LAKEHOUSE_HOME", "LAKEHOUSE_KAFKA_PORT")}
    os.environ["LAKEHOUSE_HOME"] = str(home)
    os.environ["LAKEHOUSE_KAFKA_PORT"] = str(port)
    try:
        local_kafka.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield f"127.0.0.1:{port}"
    os.environ["LAKEHOUSE_HOME"] = str(home)
    os.environ["LAKEHOUSE_KAFKA_PORT"] = str(port)
    local_kafka.stop()


SHARED_LAKE = ("LAKEHOUSE_CATALOG_URI", "LAKEHOUSE_WAREHOUSE", "LAKEHOUSE_S3_ENDPOINT")


@pytest.fixture
def lake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LAKEHOUSE_HOME for one test; settings derived from it (Dagster, dbt) follow."""
    home = tmp_path / "lake"
    home.mkdir()
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    # The catalog and warehouse under this home too, never a shared one from the developer's shell.
    for name in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", *SHARED_LAKE):
        monkeypatch.delenv(name, raising=False)
    from ingestion.config import export_for_subprocesses

    export_for_subprocesses()
    for name in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
        monkeypatch.setenv(name, os.environ[name])  # restored after the test
    return home


@pytest.fixture
def kafka_env(kafka_bootstrap: str, lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every client of the product at the session broker, with a fresh lake."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return kafka_bootstrap


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake_home: Path):
    """A broker of this test's own, to stop and start without disturbing the session's."""
    from ingestion import local_kafka

    port = free_port_pair()
    monkeypatch.setenv("LAKEHOUSE_KAFKA_PORT", str(port))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    local_kafka.start()
    yield f"127.0.0.1:{port}"
    local_kafka.stop()


def recreate_topics(bootstrap: str, *topics: str, partitions: int = 3) -> None:
    """Delete and create topics so that a test starts from offset 0 on an empty log."""
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()
        deadline = time.monotonic() + 30
        while set(doomed) & set(admin.list_topics(timeout=10).topics):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {doomed} were not deleted")
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
        try:
            for future in futures.values():
                future.result()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session, started on first use (see tests/services.py)."""
    from tests import services

    try:
        with services.postgres_server() as server:
            yield server
    except services.ServiceUnavailable as reason:  # raised before the server starts, never after
        pytest.skip(str(reason))


@pytest.fixture
def postgres_catalog_uri(postgres_server) -> str:
    """`postgresql://…` of a fresh, empty database on the session's PostgreSQL, for one test."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """moto's S3-compatible server for the session, started on first use (see tests/services.py)."""
    from tests import services

    with services.s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_warehouse(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<a fresh bucket>/lake`, with the endpoint and credentials set in the environment
    (`LAKEHOUSE_S3_ENDPOINT`, `AWS_*`), which child processes inherit."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{s3_server.create_bucket()}/lake"
