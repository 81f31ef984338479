"""Stock prices: ticks of five symbols, prices drawn from a normal distribution per symbol.

The extension of `prices.yml`, which declares the stream.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from ingestion.contracts import Contract

# Mean and standard deviation of each symbol's price.
SYMBOLS: dict[str, tuple[float, float]] = {
    "AAPL": (238.0, 4.0),
    "MSFT": (412.0, 6.0),
    "GOOG": (171.0, 3.0),
    "AMZN": (186.0, 3.5),
    "TSLA": (252.0, 12.0),
}


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


def __getattr__(name: str) -> Contract | tuple[Contract, ...]:
    # The contracts are declared in prices.yml; these names read them from the registry.
    from ingestion.streams import contract

    if name == "CONTRACT":
        return contract("prices")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
