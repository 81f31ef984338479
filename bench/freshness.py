"""Seconds from a record's produce until an analyst sees it in a mart, with the product's own stack.

    uv run python bench/freshness.py [--intervals 60 15] [--bursts 8] [--gap 40]

For each sensor interval it starts a fresh lake with the local broker and `lakehouse ui`
(`LAKEHOUSE_SENSOR_INTERVAL_S` = the interval), then sends bursts of 20 price ticks, one burst
every `--gap` seconds, with a plain confluent-kafka producer that shares no code with the product.
A burst counts as seen when `prices_symbol_stats` in the warehouse snapshot that `lakehouse shell`
opens counts all its ticks. It prints per interval the p50, p95 and max seconds from a burst's
produce until then. A burst not seen within `--timeout` seconds counts as that many. A first
burst, sent as the UI starts, is printed but not counted: it measures the stack's start (the
webserver, the daemon, the first run parsing the dbt project), not how fresh a running stack is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

BURST = 20
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA")


def send_burst(bootstrap: str, burst: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    now = datetime.now()
    for i in range(BURST):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        tick = {"ts": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "symbol": symbol, "price": 200.0 + burst + i / 100}
        producer.produce("prices", key=symbol.encode(), value=json.dumps(tick).encode())
    assert producer.flush(30) == 0


def ticks_seen(home: Path) -> int:
    """The ticks `prices_symbol_stats` counts in the snapshot `lakehouse shell` would open."""
    import duckdb

    pointer = home / "snapshots" / "LATEST"
    if not pointer.exists():
        return 0
    path = home / "snapshots" / pointer.read_text().strip() / "warehouse.duckdb"
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute("select coalesce(sum(tick_count), 0) from prices_symbol_stats").fetchone()[0]
    except (duckdb.Error, OSError):  # not written yet, or replaced under us: look again
        return 0


def measure(interval: int, bursts: int, gap: float, timeout: float) -> list[float]:
    from ingestion import kafka, local_kafka

    home = Path(tempfile.mkdtemp(prefix=f"bench-fresh-{interval}-"))
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_SENSOR_INTERVAL_S": str(interval)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    os.environ.update({k: env[k] for k in ("LAKEHOUSE_HOME", "LAKEHOUSE_SENSOR_INTERVAL_S")})
    os.environ.setdefault("LAKEHOUSE_KAFKA_PORT", "19392")
    env["LAKEHOUSE_KAFKA_PORT"] = os.environ["LAKEHOUSE_KAFKA_PORT"]
    broker = local_kafka.start()
    kafka.ensure_topic("prices", partitions=3)
    lakehouse = str(Path(sys.executable).with_name("lakehouse"))
    log = open(home / "ui.log", "wb")  # noqa: SIM115 - the child's for its lifetime
    ui = subprocess.Popen(
        ["env", "--default-signal=INT,TERM", lakehouse, "ui", "--port", "3391"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies: list[float] = []
    try:
        expected = 0
        for burst in range(bursts + 1):
            started = time.monotonic()
            send_burst(broker.bootstrap, burst)
            expected += BURST
            while ticks_seen(home) < expected and time.monotonic() - started < timeout:
                time.sleep(0.5)
            seen = time.monotonic() - started
            if burst == 0:
                print(f"  interval {interval:>4} s, warm-up burst (the stack's start): seen after {seen:6.1f} s")
            else:
                latencies.append(min(seen, timeout))
                print(f"  interval {interval:>4} s, burst {burst}/{bursts}: seen after {seen:6.1f} s", flush=True)
            time.sleep(max(0.0, gap - seen))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
        local_kafka.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intervals", type=int, nargs="+", default=[60, 15], help="Sensor intervals, seconds.")
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--gap", type=float, default=40.0, help="Seconds between bursts.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for one burst.")
    args = parser.parse_args()
    results = {interval: measure(interval, args.bursts, args.gap, args.timeout) for interval in args.intervals}
    print(f"\n{'interval':>9} {'p50':>7} {'p95':>7} {'max':>7}   seconds from produce to the mart in the shell")
    for interval, seconds in results.items():
        p95 = statistics.quantiles(seconds, n=20, method="inclusive")[-1] if len(seconds) > 1 else seconds[0]
        print(f"{interval:>7} s {statistics.median(seconds):>7.1f} {p95:>7.1f} {max(seconds):>7.1f}")


if __name__ == "__main__":
    main()
