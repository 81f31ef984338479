{{
    config(
        materialized='incremental',
        unique_key='provider_service_key',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#-
  A provider may re-send a row (a corrected file, a replay): one row per provider, procedure,
  place of service and data year, the latest record winning. The table grows incrementally:
  a build reads only the offsets past those it already holds, and a re-sent row replaces the
  one it re-sends.

  Each key's winner is found on a narrow projection (the key and the Kafka coordinates), and
  only the winners' wide rows are kept by a join: the wide rows are never sorted. The new rows
  are read twice as a subquery, not as a CTE: DuckDB (1.4) materializes a CTE read twice, every
  typed column of 10M rows, even when told `not materialized`, where a subquery reads only the
  columns each side needs.
-#}

{%- set staged = ref('stg_cms__provider_services') -%}
{%- set new_rows = rows_past(staged, this) if is_incremental() else '(select * from ' ~ staged ~ ')' -%}

{%- set provider_service_key -%}
    concat_ws('|', npi, hcpcs_code, place_of_service, coalesce(cast(data_year as varchar), ''))
{%- endset -%}

with

winners as (

    -- the latest record of each key: the later Kafka timestamp, then partition, then offset
    select
        arg_max(
            struct_pack(kafka_generation, kafka_partition, kafka_offset),
            struct_pack(kafka_timestamp, kafka_partition, kafka_offset)
        ) as winner
    from {{ new_rows }} as new_rows
    group by {{ provider_service_key }}

),

latest as (

    select
        {{ provider_service_key }} as provider_service_key,
        new_rows.*
    from {{ new_rows }} as new_rows
    semi join winners
        on new_rows.kafka_generation is not distinct from winners.winner.kafka_generation
        and new_rows.kafka_partition = winners.winner.kafka_partition
        and new_rows.kafka_offset = winners.winner.kafka_offset

)

select * from latest
