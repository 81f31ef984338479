"""One module per stream: its contract and its producer. `CONTRACTS` is the registry every command reads."""

from __future__ import annotations

from ingestion.contracts import Contract, Export
from ingestion.streams import carepay, cms, office, prices, stedi

CONTRACTS: dict[str, Contract] = {
    contract.topic: contract
    for contract in (prices.CONTRACT, cms.CONTRACT, *office.CONTRACTS, *carepay.CONTRACTS, *stedi.CONTRACTS)
}

# What streams send on after their marts are built, by stream.
EXPORTS: dict[str, Export] = {export.stream: export for export in (stedi.EXPORT,)}

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
