"""The dbt files a declared stream makes (`ingestion/declared.py`): its raw sources and staging models.

They are written under the lake home, never into the project: a stream is onboarded with no file
of the project changed. With declared streams, dbt runs in `<LAKEHOUSE_HOME>/generated/dbt_project/`,
the project's own files linked in and the folder `generated/` (the project's second model path in
`dbt_project.yml`) beside them, so dbt sees one project with relative paths; a stream's own marts
are ordinary models under `models/marts/<stream>/` that `ref()` its staging model. Each topic's
staging model `stg_<stream>__<entity>` types the declared fields, leaves tombstones out and,
with a key, keeps each key's latest record (by Kafka coordinates: generation, then record
timestamp, then offset).

The files are made anew before every parse (`orchestration/manifest.py`), so they always follow
the declarations, and only rewritten when their text changes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import yaml

from ingestion.config import Settings
from ingestion.contracts import Contract
from ingestion.declared import Declaration

# Declared type -> DuckDB's (a decimal's is its own spelling).
_SQL_TYPES = {
    "string": "varchar",
    "int": "bigint",
    "double": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}

# The Kafka coordinates every staging model carries, as the built-in ones do.
_COORDINATES = (
    ("_generation", "integer", "kafka_generation", "Generation of the topic the record came from."),
    ("_kafka_partition", "integer", "kafka_partition", "Kafka partition of the record."),
    ("_kafka_offset", "bigint", "kafka_offset", "Kafka offset of the record; unique within its partition."),
    ("_kafka_timestamp", "timestamptz", "kafka_timestamp", "Kafka record timestamp (UTC)."),
    ("_kafka_key", "varchar", "kafka_key", "Kafka record key, as text."),
)


# What dbt writes into a project folder, and so is no file of it.
NOT_CODE = {"target", "logs", "dbt_packages"}


def composed_dir(settings: Settings) -> Path:
    return settings.generated_dir / "dbt_project"


def staging_model_name(contract: Contract) -> str:
    assert contract.declared is not None
    return f"stg_{contract.stream}__{contract.declared.entity}"


def write_generated(settings: Settings, contracts: Iterable[Contract], project: Path) -> Path:
    """The folder dbt runs in: `project` itself when no stream has its staging generated (the
    built-in ones ship their own), else the composed project with the sources and staging models
    of every such contract (any left from declarations that are gone removed)."""
    contracts = [c for c in contracts if c.declared is not None and c.declared.generates_staging]
    composed = composed_dir(settings)
    if not contracts:
        shutil.rmtree(composed, ignore_errors=True)
        return project
    composed.mkdir(parents=True, exist_ok=True)
    for link in composed.iterdir():
        if link.is_symlink() and not link.exists():  # a file the project no longer has
            link.unlink()
    for entry in project.iterdir():
        link = composed / entry.name
        if entry.name not in NOT_CODE and entry.name != "generated" and not link.is_symlink():
            link.symlink_to(entry)
    folder = composed / "generated"
    wanted: dict[Path, str] = {}
    by_stream: dict[str, list[Contract]] = {}
    for contract in contracts:
        by_stream.setdefault(contract.stream, []).append(contract)
    for stream, declared in by_stream.items():
        stream_dir = folder / "staging" / stream
        wanted[stream_dir / f"_{stream}__sources.yml"] = _sources_yml(declared)
        for contract in declared:
            name = staging_model_name(contract)
            wanted[stream_dir / f"{name}.sql"] = staging_sql(contract)
            wanted[stream_dir / f"{name}.yml"] = _model_yml(contract)
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                shutil.rmtree(path)
    return composed


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(declared: str) -> str:
    return _SQL_TYPES.get(declared, declared)


def staging_sql(contract: Contract) -> str:
    declaration = contract.declared
    assert declaration is not None
    columns = [f"cast({_quoted(f.name)} as {_sql_type(f.type)}) as {_quoted(f.name)}" for f in declaration.fields]
    columns += [f"cast({raw} as {kind}) as {name}" for raw, kind, name, _ in _COORDINATES]
    select = ",\n        ".join(columns)
    ctes = [
        f"source as (\n\n    select * from {{{{ raw_source('{contract.table_name}') }}}}\n\n)",
        f"typed as (\n\n    select\n        {select}\n\n    from source\n    where not coalesce(_tombstone, false)\n\n)",
    ]
    if declaration.key is not None:
        ctes.append(
            "latest as (\n\n    select * from typed\n    qualify row_number() over (\n"
            f"        partition by {_quoted(declaration.key)}\n"
            "        order by kafka_generation desc, kafka_timestamp desc, kafka_partition desc, kafka_offset desc\n"
            "    ) = 1\n\n)"
        )
    last = ctes[-1].split(" ", 1)[0]
    return _header(declaration, "--") + "with\n\n" + ",\n\n".join(ctes) + f"\n\nselect * from {last}\n"


def _header(declaration: Declaration, comment: str = "#") -> str:
    return f"{comment} Made from {declaration.path.name} by orchestration/generated.py: change the declaration, not this file.\n"


def _sources_yml(contracts: list[Contract]) -> str:
    assert contracts[0].declared is not None
    tables = [
        {
            "name": c.table_name,
            "description": f"The Kafka topic `{c.topic}`, one row per record. {c.description}",
            "meta": {"topic": c.topic},
        }
        for c in contracts
    ]
    document = {"version": 2, "sources": [{"name": "raw", "tables": tables}]}
    return _header(contracts[0].declared) + yaml.safe_dump(document, sort_keys=False)


def _model_yml(contract: Contract) -> str:
    declaration = contract.declared
    assert declaration is not None
    kept = (
        f" Each {declaration.key} once: its latest record."
        if declaration.key
        else " Every record the drain stored, once."
    )
    columns = []
    for f in declaration.fields:
        tests: list = ["not_null"] if f.name in contract.required else []
        if f.name == declaration.key:
            tests.append("unique")
        column = {"name": f.name, "description": f.description or f"{f.name} ({f.type})."}
        if tests:
            column["data_tests"] = tests
        columns.append(column)
    columns += [{"name": name, "description": about} for _, _, name, about in _COORDINATES]
    model = {
        "name": staging_model_name(contract),
        "description": f"The topic `{contract.topic}` typed as {declaration.path.name} declares it, tombstones left out.{kept}",
        "columns": columns,
    }
    return _header(declaration) + yaml.safe_dump({"version": 2, "models": [model]}, sort_keys=False)
