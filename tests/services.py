"""Servers the suite starts and stops itself: a real PostgreSQL for the catalog, an S3 for the warehouse.

Each is started once per session, and only when a test asks for it; each test then gets a fresh
database or bucket of its own on it.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "no PostgreSQL server binaries (initdb, pg_ctl) found: apt-get install postgresql"
S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION = "lakehouse-test", "lakehouse-test-secret", "us-east-1"


class ServiceUnavailable(Exception):
    """The machine lacks what a service needs; the tests that need it skip with this reason."""


def free_port() -> int:
    """A free port on 127.0.0.1 below the ephemeral range (an outgoing connection cannot take it
    between the pick and the server's bind)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError):
        ephemeral = 32768
    for _ in range(200):
        port = random.randrange(20000, ephemeral)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


def postgres_bindir() -> Path:
    """The folder of PostgreSQL's server binaries: initdb on PATH (symlinks resolved, so pg_ctl is
    taken from the same installation), else Debian's newest /usr/lib/postgresql/<major>/bin."""
    candidates = []
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir:
            candidates.append(Path(bindir))
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    candidates += [Path(p) for p in reversed(debian)]
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ServiceUnavailable(INSTALL_HINT)


def _unprivileged() -> tuple[list[str], pwd.struct_passwd | None]:
    """How to run PostgreSQL's binaries, which refuse to run as root: as `postgres` (or `nobody`)
    through runuser or setpriv when this process is root, as this user otherwise."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"], user
    raise ServiceUnavailable(
        "running as root, and neither runuser nor setpriv nor a postgres/nobody user to run PostgreSQL as"
    )


@dataclass
class PostgresServer:
    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URI."""
        import psycopg2

        name = "lake_" + uuid.uuid4().hex[:12]
        connection = psycopg2.connect(self.uri("postgres"))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"create database {name}")
        finally:
            connection.close()
        return self.uri(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server initdb'd in a temporary folder, on 127.0.0.1 at a free port (and a unix
    socket in that folder), with password authentication over TCP; stopped and removed after."""
    bindir = postgres_bindir()
    prefix, user = _unprivileged()
    # Not under pytest's temp folder: that one is private to root, and the server runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    server = PostgresServer(port=free_port(), user="lakehouse", password=uuid.uuid4().hex)
    data, log, pwfile = folder / "data", folder / "server.log", folder / "pwfile"
    pwfile.write_text(server.password + "\n")
    if user is not None:
        for path in (folder, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    started = False
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={pwfile}"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync"]
        _run([*prefix, *initdb], "initdb", folder)
        # A throwaway server: durability costs time and buys nothing here.
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
        _run([*prefix, *pg_ctl], "pg_ctl start", folder, log)
        started = True
        yield server
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                cwd=folder,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _run(command: list[str], what: str, cwd: Path, log: Path | None = None) -> None:
    # In the server's own folder: the unprivileged user may not be able to enter this one.
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{tail}")


@dataclass
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The variables the product reads to reach this server."""
        return {
            "LAKEHOUSE_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_REGION": S3_REGION,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
        )

    def create_bucket(self) -> str:
        name = "lake-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@contextmanager
def s3_server(log_folder: Path) -> Iterator[S3Server]:
    """moto's S3-compatible server on 127.0.0.1 at a free port, in a child process; stopped after."""
    port = free_port()
    log = (log_folder / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_it_answers(endpoint, process, log_folder / "moto.log")
        yield S3Server(endpoint)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_until_it_answers(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answered, if not with a page
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {process.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"moto's server did not answer at {endpoint} within 60 s")
        time.sleep(0.1)
