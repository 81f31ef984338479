"""One module per stream: its contract and its producer. `CONTRACTS` is the registry every command reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingestion.contracts import Contract
from ingestion.streams import carepay, cms, office, prices, stedi

CONTRACTS: dict[str, Contract] = {
    contract.topic: contract
    for contract in (prices.CONTRACT, cms.CONTRACT, *office.CONTRACTS, *carepay.CONTRACTS, *stedi.CONTRACTS)
}

# What a stream sends on after its marts are built: a function of the warehouse's path that
# returns how many messages it published.
EXPORTS: dict[str, Callable[[Path], int]] = {"stedi": stedi.publish_scores}

STREAMS: dict[str, tuple[Contract, ...]] = {}
for _contract in CONTRACTS.values():
    STREAMS.setdefault(_contract.stream, ())
    STREAMS[_contract.stream] += (_contract,)


class UnknownStream(ValueError):
    pass


def contracts_for(name: str) -> tuple[Contract, ...]:
    """The contracts of a stream (`prices`) or of a single topic (`prices`, `cms.provider_services`)."""
    if name in STREAMS:
        return STREAMS[name]
    if name in CONTRACTS:
        return (CONTRACTS[name],)
    known = ", ".join(sorted(set(STREAMS) | set(CONTRACTS)))
    raise UnknownStream(f"unknown stream or topic {name!r}; known: {known}")
