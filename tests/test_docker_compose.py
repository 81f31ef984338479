"""docker-compose.yml has the shape the README promises, and runs only commands the project has.

No Docker engine runs here, so the file is checked as data: its services, ports, volumes, and
every `lakehouse ...` command resolved against the real CLI.
"""

from __future__ import annotations

import click
import pytest
import yaml

from ingestion.config import REPO_ROOT
from orchestration.commands.cli import cli


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def resolve(args: list[str]) -> click.Command:
    """Find the (sub)command the arguments name and parse its options, without running it."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="lakehouse")
    while isinstance(command, click.Group):
        name, *args = args
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r}"
        ctx = click.Context(command, info_name=name, parent=ctx)
    command.make_context(command.name, list(args), parent=ctx)  # raises on an unknown option
    return command


def test_kafka_is_the_official_image_in_kraft_mode_with_its_data_in_a_volume(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert "broker,controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "9092:9092" in kafka["ports"]
    assert any(volume.startswith("kafka-data:") for volume in kafka["volumes"])


PROJECT_SERVICES = (
    "dagster-code", "dagster-webserver", "dagster-daemon", "dbt-docs",
    "producer-prices", "producer-cms", "producer-office", "producer-carepay", "producer-stedi",
)  # fmt: skip


def test_dagster_its_code_location_a_producer_per_stream_and_the_docs_run_the_project_image_on_one_lake(compose):
    services = compose["services"]
    for name in PROJECT_SERVICES:
        service = services[name]
        assert service["build"] == "."
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert service["environment"]["LAKEHOUSE_HOME"] == "/lake"
        assert "lake:/lake" in service["volumes"]
        assert "kafka" in service["depends_on"]
    assert "3000:3000" in services["dagster-webserver"]["ports"]
    assert "8080:8080" in services["dbt-docs"]["ports"]
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["command"][-2:] == ["--code-server", "dagster-code:4000"]
    assert set(compose["volumes"]) == {"kafka-data", "lake"}


def test_every_service_command_is_a_real_lakehouse_command(compose):
    commands = [s["command"] for s in compose["services"].values() if "command" in s]
    assert len(commands) == len(PROJECT_SERVICES)
    for command in commands:
        if command[:2] == ["sh", "-c"]:  # a retry loop around one lakehouse command
            command = command[2].split("until ")[1].split(";")[0].split()
        assert command[0] == "lakehouse"
        resolve(command[1:])


def test_the_image_installs_the_locked_dependencies_and_has_the_cli():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile
    assert "LAKEHOUSE_HOME=/lake" in dockerfile
