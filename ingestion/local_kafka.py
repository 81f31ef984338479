"""The embedded default broker: the official Apache Kafka jars, resolved by Maven, run as one KRaft node.

`kafka/pom.xml` names the broker artifact (`org.apache.kafka:kafka_2.13`); Maven resolves its
classpath into ~/.m2 (outside git) once, and the classpath is cached per pom content. The node
is broker and controller in one process, listening on 127.0.0.1 only, with its data, logs and
pid file under `<LAKEHOUSE_HOME>/kafka/`.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ingestion import maven
from ingestion.config import REPO_ROOT, settings

log = logging.getLogger(__name__)

POM = REPO_ROOT / "kafka" / "pom.xml"
HEAP = os.environ.get("LAKEHOUSE_KAFKA_HEAP", "1g")


class LocalKafkaError(RuntimeError):
    """A problem starting or stopping the local broker, worded for the person at the terminal."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path

    def describe(self) -> str:
        if self.running:
            return f"Kafka is running at {self.bootstrap} (pid {self.pid}, data in {self.data_dir})"
        return f"Kafka is not running (would listen at {self.bootstrap})"


def _require(tool: str, package_hint: str) -> str:
    try:
        return maven.require(tool, package_hint, "run the local Kafka broker")
    except maven.MavenError as exc:
        raise LocalKafkaError(str(exc)) from None


def classpath() -> str:
    """The broker's Java classpath, resolved through Maven once and cached by the pom's content."""
    try:
        return maven.classpath(POM, "kafka", "the Kafka broker jars", "run the local Kafka broker")
    except maven.MavenError as exc:
        raise LocalKafkaError(str(exc)) from None


def _paths() -> tuple[Path, Path, Path]:
    base = settings().kafka_dir
    return base, base / "data", base / "broker.pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a running broker.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def server_properties(port: int, data_dir: Path) -> str:
    controller = port + 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "delete.topic.enable=true",
            "",
        ]
    )


LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.org.name = org.apache.kafka
logger.org.level = warn
"""


def status() -> BrokerStatus:
    _, data_dir, pid_file = _paths()
    s = settings()
    pid = _read_pid(pid_file)
    return BrokerStatus(running=pid is not None, pid=pid, bootstrap=s.bootstrap_servers, data_dir=data_dir)


def start(port: int | None = None, timeout_s: float = 90.0) -> BrokerStatus:
    """Start the local broker (idempotent: a running broker is left as it is) and wait until it answers."""
    base, data_dir, pid_file = _paths()
    port = port or settings().kafka_port
    current = status()
    if current.running:
        return current
    java = _require("java", "a Java 17+ runtime (Debian: `apt-get install openjdk-17-jre-headless`)")
    if _port_open(port) or _port_open(port + 1):
        raise LocalKafkaError(
            f"port {port} or {port + 1} on 127.0.0.1 is taken by another program: stop it, "
            f"or start Kafka elsewhere with `lakehouse kafka start --port N`"
        )
    cp = classpath()
    logs = base / "logs"
    for folder in (data_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    props.write_text(server_properties(port, data_dir))
    (base / "log4j2.properties").write_text(LOG4J2.format(logs=logs))
    (base / "port").write_text(str(port))
    jvm = [java, f"-Xmx{HEAP}", f"-Xms{HEAP}", f"-Dlog4j2.configurationFile={base / 'log4j2.properties'}"]
    jvm += ["-Djava.awt.headless=true", "-cp", cp]
    if not (data_dir / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formatted = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise LocalKafkaError(f"could not format the Kafka data folder {data_dir}: {formatted.stderr.strip()}")
    with open(logs / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            # A JVM started with SIGTERM ignored never runs its shutdown hooks, and `stop()` must
            # kill it. The ignore is inherited: a process whose parent ignores SIGINT (nohup, a
            # non-interactive shell's background job) and that runs Dagster in process has
            # SIGTERM ignored too, since Dagster maps SIGTERM to SIGINT's handler.
            ["env", "--default-signal=TERM", *jvm, "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the caller must not kill the broker mid-write
        )
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise LocalKafkaError(f"the Kafka broker exited with status {proc.returncode}; see {logs}/server.log")
        if _port_open(port):
            from ingestion import kafka

            kafka.wait_until_ready(timeout_s=max(1.0, deadline - time.monotonic()))
            log.info("Kafka broker running at 127.0.0.1:%s (pid %s)", port, proc.pid)
            return status()
        time.sleep(0.3)
    stop()
    raise LocalKafkaError(f"the Kafka broker did not answer on port {port} within {timeout_s:.0f} s; see {logs}")


def sigterm_disposition(pid: int) -> str:
    """How a process treats SIGTERM, by the kernel's masks in /proc: a JVM started with SIGTERM
    ignored or blocked never runs its shutdown hooks, and only SIGKILL stops it."""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        fields = dict(
            line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
        )
        states = [name for name, key in (("blocked", "SigBlk"), ("ignored", "SigIgn"), ("handled", "SigCgt"))
                  if int(fields[key], 16) & bit]  # fmt: skip
    except (OSError, KeyError, ValueError):
        return "unknown"
    return ", ".join(states) or "default"


def stop(timeout_s: float = 30.0) -> bool:
    """Stop the broker this home started: SIGTERM, then SIGKILL after the timeout. False if none ran."""
    _, _, pid_file = _paths()
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        log.warning(
            "Kafka (pid %s) did not stop within %.0f s of SIGTERM (which it has %s); killing it",
            pid,
            timeout_s,
            sigterm_disposition(pid),
        )
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


if __name__ == "__main__":
    # `python -m ingestion.local_kafka`: resolve the broker jars ahead of time (make's set-up step).
    print(f"Kafka classpath: {len(classpath().split(os.pathsep))} jars")
