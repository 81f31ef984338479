"""How close the drain comes to the broker's own speed, against a naive drain, in one run.

    uv run python bench/drain.py [--records 1000000] [--repeat 3]

Produces N CMS-like JSON records (about 400 bytes each) into a fresh topic, then reads the whole
topic with each contender in a child process of its own, on the same broker:

  a. limit  - a bare confluent-kafka consume loop that only touches the bytes
  b. kcat   - `kcat -C ... -e` to /dev/null (where Debian's kcat is installed)
  c. naive  - json.loads per message into dicts, a pandas DataFrame, to_parquet per batch
  d. drain  - this product's drain (ingestion.drain), exactly once into a fresh lake

and prints records/s, MB/s and peak RSS of each (the median run of --repeat, as one run on two
busy cores varies by a fifth), with the ratios d/a and d/c. It uses the broker
at KAFKA_BOOTSTRAP_SERVERS, or starts a local one of its own in a temporary LAKEHOUSE_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pyarrow as pa  # noqa: E402

from ingestion.contracts import Contract  # noqa: E402

TOPIC = "bench.cms"
BATCH = 100_000

CONTRACT = Contract(
    stream="bench",
    topic=TOPIC,
    schema=pa.schema([pa.field("npi", pa.string()), pa.field("hcpcs_code", pa.string())]),
    required=("npi", "hcpcs_code"),
    partitions=3,
)

STATES = ["AL", "AK", "AZ", "CA", "CO", "FL", "GA", "IL", "MD", "NY", "OH", "PA", "TX", "WA"]
TYPES = ["Internal Medicine", "Family Practice", "Cardiology", "Dermatology", "Diagnostic Radiology"]


def cms_like(i: int, rng: random.Random) -> bytes:
    """A record shaped like the CMS legacy layout: every value a string, about 400 bytes."""
    allowed = rng.uniform(20, 300)
    return json.dumps(
        {
            "npi": f"{1000000000 + rng.randrange(900000):010d}",
            "nppes_provider_last_org_name": rng.choice(["SMITH", "JOHNSON", "WILLIAMS", "GARCIA"]),
            "nppes_provider_gender": rng.choice("MF"),
            "nppes_provider_zip": f"{rng.randrange(100000):05d}",
            "nppes_provider_state": rng.choice(STATES),
            "provider_type": rng.choice(TYPES),
            "place_of_service": rng.choice("FO"),
            "hcpcs_code": f"{99200 + rng.randrange(100)}",
            "hcpcs_description": "Office visit",
            "line_srvc_cnt": str(rng.randrange(11, 500)),
            "bene_unique_cnt": str(rng.randrange(11, 300)),
            "average_Medicare_allowed_amt": f"{allowed:.2f}",
            "average_submitted_chrg_amt": f"{allowed * rng.uniform(2, 5):.2f}",
            "average_Medicare_payment_amt": f"{allowed * 0.8:.2f}",
            "seq": i,
        }
    ).encode()


def produce(bootstrap: str, records: int) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC in admin.list_topics(timeout=10).topics:
        admin.delete_topics([TOPIC])[TOPIC].result()
        while TOPIC in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
    while True:
        try:
            admin.create_topics([NewTopic(TOPIC, CONTRACT.partitions, 1)])[TOPIC].result()
            break
        except Exception:
            time.sleep(0.5)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20})
    rng = random.Random(1)
    total = 0
    for i in range(records):
        value = cms_like(i, rng)
        total += len(value)
        while True:
            try:
                producer.produce(TOPIC, key=str(i).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return total


# --- contenders, each run in a child process: `bench/drain.py --contender NAME` --------------------


def _consumer(bootstrap: str):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time()}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(CONTRACT.partitions)])
    return consumer


def _batches(bootstrap: str):
    consumer = _consumer(bootstrap)
    at_end: set[int] = set()
    while len(at_end) < CONTRACT.partitions:
        messages = consumer.consume(num_messages=10_000, timeout=1)
        good = []
        for m in messages:
            if m.error():
                at_end.add(m.partition())
            else:
                good.append(m)
        if good:
            yield good
    consumer.close()


def contender_limit(bootstrap: str) -> int:
    count = 0
    for messages in _batches(bootstrap):
        for m in messages:
            count += len(m.value()) > 0
    return count


def contender_naive(bootstrap: str) -> int:
    import pandas as pd

    out = Path(tempfile.mkdtemp(prefix="naive-"))
    rows: list[dict] = []
    count = files = 0
    for messages in _batches(bootstrap):
        for m in messages:
            row = json.loads(m.value())
            row.update(_kafka_partition=m.partition(), _kafka_offset=m.offset())
            rows.append(row)
        if len(rows) >= BATCH:
            pd.DataFrame(rows).to_parquet(out / f"{files}.parquet")
            count, files, rows = count + len(rows), files + 1, []
    if rows:
        pd.DataFrame(rows).to_parquet(out / f"{files}.parquet")
        count += len(rows)
    shutil.rmtree(out)
    return count


def contender_drain(bootstrap: str) -> str:
    """The records stored, then the batches and the seconds their Iceberg commits took."""
    from ingestion.drain import drain

    os.environ["LAKEHOUSE_HOME"] = tempfile.mkdtemp(prefix="drain-")
    report = drain(CONTRACT)
    shutil.rmtree(os.environ["LAKEHOUSE_HOME"])
    batches = sum(p.batches for p in report.partitions)
    commit_seconds = sum(p.commit_seconds for p in report.partitions)
    return f"{report.rows + report.quarantined} {batches} {commit_seconds:.4f}"


CONTENDERS = {"limit": contender_limit, "naive": contender_naive, "drain": contender_drain}


def run_child(command: list[str], env: dict) -> tuple[float, int, str]:
    """Run a contender; return its seconds, its peak RSS in bytes, and what it printed."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed with status {status}")
    return seconds, usage.ru_maxrss * 1024, out.strip()


def run_contender(name: str, command: list[str], env: dict, records: int) -> tuple[float, int, list[str]]:
    """One run of a contender: its seconds, peak RSS in bytes, and what else it printed."""
    if name == "b. kcat":
        with open(os.devnull, "wb") as sink:
            started = time.perf_counter()
            proc = subprocess.Popen(command, stdout=sink)
            _, _, usage = os.wait4(proc.pid, 0)
            return time.perf_counter() - started, usage.ru_maxrss * 1024, []
    seconds, rss, out = run_child(command, env)
    count, *extra = out.split()
    assert int(count) == records, f"{name} read {count} records, expected {records}"
    return seconds, rss, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each contender; the median counts.")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--skip-produce", action="store_true", help="Reuse the topic of the last run.")
    parser.add_argument(
        "--only", nargs="+", choices=["limit", "kcat", "naive", "drain"], help="Run only these contenders."
    )
    args = parser.parse_args()

    if args.contender:
        print(CONTENDERS[args.contender](os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
        return

    from ingestion import local_kafka

    started_broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        home = Path(tempfile.mkdtemp(prefix="bench-broker-"))
        os.environ["LAKEHOUSE_HOME"] = str(home)
        os.environ.setdefault("LAKEHOUSE_KAFKA_PORT", "19192")
        started_broker = local_kafka.start()
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{os.environ['LAKEHOUSE_KAFKA_PORT']}"
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    env = {**os.environ, "LAKEHOUSE_BATCH_MAX_RECORDS": str(BATCH)}
    try:
        if not args.skip_produce:
            t = time.perf_counter()
            produced = produce(bootstrap, args.records)
            print(f"produced {args.records:,} records ({produced / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        payload_mb = args.records * len(cms_like(0, random.Random(1))) / 1e6

        results: dict[str, tuple[float, int]] = {}
        me = [sys.executable, __file__, "--contender"]
        commands = {
            "a. limit": [*me, "limit"],
            "b. kcat": ["kcat", "-C", "-b", bootstrap, "-t", TOPIC, "-e", "-q", "-o", "beginning"]
            if shutil.which("kcat")
            else None,
            "c. naive": [*me, "naive"],
            "d. drain": [*me, "drain"],
        }
        print(f"\n{'contender':<10} {'records/s':>12} {'MB/s':>8} {'peak RSS':>10}   (median of {args.repeat} runs)")
        for name, command in commands.items():
            if args.only and name.split(". ")[1] not in args.only:
                continue
            if command is None:
                print(f"{name:<10} {'(kcat not installed)':>32}")
                continue
            runs = sorted(run_contender(name, command, env, args.records) for _ in range(args.repeat))
            seconds, rss, extra = runs[len(runs) // 2][0], max(r for _, r, _ in runs), runs[len(runs) // 2][2]
            results[name] = (seconds, rss)
            print(f"{name:<10} {args.records / seconds:>12,.0f} {payload_mb / seconds:>8.1f} {rss / 2**20:>8.0f} MiB")
            if extra:
                batches, commit_seconds = int(extra[0]), float(extra[1])
                commits = f"{commit_seconds / batches * 1000:.0f} ms per batch" if batches else "no batch"
                print(
                    f"{'':<10} Iceberg commits: {commits}, {batches} batches, {commit_seconds / seconds:.0%} of the run"
                )

        ratios = [
            ("a. limit", "d/a", "target >= 1.5: the drain's speed over the bare consume loop's"),
            ("b. kcat", "d/b", "the drain's speed over kcat's"),
            ("c. naive", "d/c", "target >= 5: the drain's speed over the naive drain's"),
        ]
        if "d. drain" in results:
            print()
            for key, label, meaning in ratios:
                if key in results:
                    print(f"{label} = {results[key][0] / results['d. drain'][0]:.2f}  ({meaning})")
    finally:
        if started_broker is not None:
            local_kafka.stop()


if __name__ == "__main__":
    main()
