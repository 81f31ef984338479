"""Jars from Maven Central for the Java programs the product runs (the Kafka broker, Spark's Iceberg).

A pom names the artifacts; `mvn dependency:build-classpath` resolves them into ~/.m2 (outside
git) once, and the classpath is cached per pom content under ~/.cache/lakehouse, so later starts
neither run Maven nor reach the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakehouse"


class MavenError(RuntimeError):
    """Maven is missing or could not resolve a pom, worded for the person at the terminal."""


def require(tool: str, package_hint: str, purpose: str) -> str:
    """The path of `tool`, or an error saying what to install and what it is needed for."""
    found = shutil.which(tool)
    if not found:
        raise MavenError(f"`{tool}` is not installed: install {package_hint} to {purpose}")
    return found


def classpath(pom: Path, name: str, jars: str, purpose: str) -> str:
    """The runtime classpath of `pom` (jar paths joined by os.pathsep), resolved once and cached.

    `name` names the cache file, `jars` what is resolved ("the Kafka broker jars") and `purpose`
    what Maven is needed for ("run the local Kafka broker"), for the log and the errors.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cached = CACHE_DIR / f"{name}-classpath-{digest}.txt"
    if cached.exists():
        found = cached.read_text().strip()
        if found and all(Path(jar).exists() for jar in found.split(os.pathsep)):
            return found
    mvn = require("mvn", "Maven (Debian: `apt-get install maven`)", purpose)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    log.info("resolving %s through Maven (once)", jars)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={cached}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not cached.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise MavenError(f"Maven could not resolve {jars}:\n" + "\n".join(tail))
    return cached.read_text().strip()
