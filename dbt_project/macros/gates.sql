{#
  What staging reads of a raw topic: exactly the snapshot of its Iceberg table `raw.<table>` that
  every one of its quality gates has passed. Each gate records the snapshot it validated
  (expectations/gate.py), and before dbt runs, `publish_read_snapshots` names, per table, the
  oldest snapshot all of its gates passed (`LAKEHOUSE_HOME/gates/_read/<table>.json`: the current
  one for a table without gates). Rows drained after the gates last ran wait for the next run of
  the gates, whoever starts the build, so a row never reaches a mart unvalidated. The snapshot is
  read when the model runs, never when the project is parsed. The rows a gate set aside
  (`LAKEHOUSE_HOME/set_aside/<topic>/*.parquet`, see ingestion/set_aside.py) are left out.
#}

{#- The raw table `table` (a source of `raw`) as a subquery of the rows its gates passed. -#}
{% macro raw_source(table) %}
  {%- set lineage = source('raw', table) -%}
  {%- set read = read_document(table) -%}
  {{ return("(select * from " ~ raw_snapshot(read) ~ " as gated where true" ~ not_set_aside(read) ~ ")") }}
{% endmacro %}


{#- What `publish_read_snapshots` named for the table (its topic, metadata and snapshot), or {} before it ran. -#}
{% macro read_document(table) %}
  {%- set path = env_var('LAKEHOUSE_HOME', '../data_lake') ~ '/gates/_read/' ~ table ~ '.json' -%}
  {%- if execute and run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0] -%}
    {{ return(fromjson(run_query("select content from read_text('" ~ path ~ "')").columns[0].values()[0])) }}
  {%- endif -%}
  {{ return({}) }}
{% endmacro %}


{#- Field -> the lower-case names it arrives under, as the table's contract spells them
    (ingestion/streams/cms.py for CMS); {} when the model is parsed, not run. -#}
{% macro spellings(table) %}
  {{ return(read_document(table).get('spellings', {})) }}
{% endmacro %}


{#- The column the raw table keeps a Kafka header in, as its contract names it (`headers` in
    ingestion/streams/cms.yml for CMS); none when the model is parsed, not run. -#}
{% macro header_column(table, header) %}
  {{ return(read_document(table).get('headers', {}).get(header)) }}
{% endmacro %}


{#- DuckDB's scan of the snapshot staging reads; with no snapshot passed yet, none of the table's
    rows (its columns still there), and with no table yet, no row of the drain's metadata columns,
    so a stream whose other topics have data still builds. -#}
{% macro raw_snapshot(read) %}
  {%- if read.get('metadata_location') -%}
    {%- set scan = "iceberg_scan('" ~ read.metadata_location ~ "'" -%}
    {%- if read.get('snapshot_id') is not none -%}
      {{ return(scan ~ ", snapshot_from_id = " ~ read.snapshot_id ~ ")") }}
    {%- endif -%}
    {{ return("(select * from " ~ scan ~ ") where false)") }}
  {%- endif -%}
  {{ return("(select null::varchar as _topic, null::integer as _kafka_partition, null::bigint as _kafka_offset, "
            ~ "null::timestamptz as _kafka_timestamp, null::varchar as _kafka_key, null::boolean as _tombstone, "
            ~ "null::integer as _generation where false)") }}
{% endmacro %}


{#- `and` an anti-join on the set-aside coordinates of the table's topic, or nothing while none is set aside. -#}
{% macro not_set_aside(read) %}
  {%- if not execute or not read.get('topic') -%}
    {{ return('') }}
  {%- endif -%}
  {%- set files = env_var('LAKEHOUSE_HOME', '../data_lake') ~ '/set_aside/' ~ read.topic ~ '/*.parquet' -%}
  {%- if run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] == 0 -%}
    {{ return('') }}
  {%- endif -%}
  {{ return(" and not exists (select 1 from read_parquet('" ~ files ~ "', union_by_name = true) as set_aside"
            ~ " where set_aside._generation = gated._generation and set_aside._kafka_partition = gated._kafka_partition"
            ~ " and set_aside._kafka_offset = gated._kafka_offset)") }}
{% endmacro %}
