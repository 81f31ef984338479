"""Dagster's code location (`definitions.py`, `defs/`), the operator's command line `lakehouse`
(`commands/`), and the modules both use (the dbt manifest, snapshots, the marts' publication)."""
