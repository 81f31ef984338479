"""Stock prices: ticks of five symbols, prices drawn from a normal distribution per symbol."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pyarrow as pa

from ingestion.contracts import Contract

# Mean and standard deviation of each symbol's price.
SYMBOLS: dict[str, tuple[float, float]] = {
    "AAPL": (238.0, 4.0),
    "MSFT": (412.0, 6.0),
    "GOOG": (171.0, 3.0),
    "AMZN": (186.0, 3.5),
    "TSLA": (252.0, 12.0),
}

CONTRACT = Contract(
    stream="prices",
    topic="prices",
    schema=pa.schema(
        [
            pa.field("ts", pa.timestamp("ms")),
            pa.field("symbol", pa.string()),
            pa.field("price", pa.float64()),
        ]
    ),
    required=("ts", "symbol", "price"),
    event_time="ts",
    description="Stock price ticks: ts, symbol, price.",
    partitions=3,
    suites=("raw_prices",),
)


def ticks(seed: int | None = None, start: datetime | None = None) -> Iterator[tuple[bytes, bytes]]:
    """An endless stream of (key, value) messages: key = symbol, value = the tick as JSON."""
    rng = random.Random(seed)
    clock = start or datetime.now().replace(microsecond=0)
    names = list(SYMBOLS)
    while True:
        symbol = rng.choice(names)
        mean, sd = SYMBOLS[symbol]
        clock += timedelta(milliseconds=rng.randint(1, 400))
        value = {
            "ts": clock.strftime("%Y-%m-%d %H:%M:%S.") + f"{clock.microsecond // 1000:03d}",
            "symbol": symbol,
            "price": round(rng.gauss(mean, sd), 2),
        }
        yield symbol.encode(), json.dumps(value).encode()
