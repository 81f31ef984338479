"""One module per built-in stream (its contract and its producer), and the streams declared in
`LAKEHOUSE_STREAMS_DIR` (`ingestion/declared.py`). `CONTRACTS` is the registry every command reads."""

from __future__ import annotations

import functools

from ingestion.config import settings
from ingestion.contracts import Contract, Export
from ingestion.declared import InvalidDeclaration, load_folder
from ingestion.streams import carepay, cms, office, prices, stedi

BUILT_IN: tuple[Contract, ...] = (
    prices.CONTRACT,
    cms.CONTRACT,
    *office.CONTRACTS,
    *carepay.CONTRACTS,
    *stedi.CONTRACTS,
)


def _declared() -> tuple[Contract, ...]:
    folder = settings().streams_dir
    if folder is None:
        return ()
    contracts = tuple(load_folder(folder))
    built_in = {c.stream for c in BUILT_IN} | {c.topic for c in BUILT_IN}
    for contract in contracts:
        if contract.stream in built_in or contract.topic in built_in:
            raise InvalidDeclaration(
                f"{contract.declared.path if contract.declared else folder}: {contract.stream!r} "
                f"({contract.topic}) is a built-in stream or topic already"
            )
    return contracts


# What streams send on after their marts are built, by stream.
EXPORTS: dict[str, Export] = {export.stream: export for export in (stedi.EXPORT,)}


@functools.cache
def _registry() -> tuple[dict[str, Contract], dict[str, tuple[Contract, ...]]]:
    contracts: dict[str, Contract] = {}
    for contract in (*BUILT_IN, *_declared()):
        same_table = [c.topic for c in contracts.values() if c.table_name == contract.table_name]
        if same_table:
            raise InvalidDeclaration(
                f"topics {same_table[0]!r} and {contract.topic!r} would share the table {contract.table_name}"
            )
        contracts[contract.topic] = contract
    streams: dict[str, tuple[Contract, ...]] = {}
    for contract in contracts.values():
        streams[contract.stream] = (*streams.get(contract.stream, ()), contract)
    return contracts, streams


def __getattr__(name: str):
    # `CONTRACTS` (by topic) and `STREAMS` (by stream) are read on first use, not at import: a
    # declaration that cannot be read is then an error the command line reports, not a traceback.
    if name == "CONTRACTS":
        return _registry()[0]
    if name == "STREAMS":
        return _registry()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownStream(ValueError):
    pass


def contracts_for(name: str) -> tuple[Contract, ...]:
    """The contracts of a stream (`prices`) or of a single topic (`prices`, `cms.provider_services`)."""
    contracts, streams = _registry()
    if name in streams:
        return streams[name]
    if name in contracts:
        return (contracts[name],)
    known = ", ".join(sorted(set(streams) | set(contracts)))
    raise UnknownStream(f"unknown stream or topic {name!r}; known: {known}")
