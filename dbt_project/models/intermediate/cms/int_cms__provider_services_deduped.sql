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
  only the winners' wide rows are kept by a join: the wide rows are never sorted.
-#}

with

new_rows as not materialized (

    select * from {{ ref('stg_cms__provider_services') }}
    {% if is_incremental() %}
    where {{ offsets_past(this) }}
    {% endif %}

),

keyed as not materialized (

    select
        concat_ws('|', npi, hcpcs_code, place_of_service, coalesce(cast(data_year as varchar), '')) as provider_service_key,
        *
    from new_rows

),

winners as (

    -- the latest record of each key: the later Kafka timestamp, then partition, then offset
    select
        arg_max(
            struct_pack(kafka_generation, kafka_partition, kafka_offset),
            struct_pack(kafka_timestamp, kafka_partition, kafka_offset)
        ) as winner
    from keyed
    group by provider_service_key

),

latest as (

    select keyed.*
    from keyed
    semi join winners
        on keyed.kafka_generation is not distinct from winners.winner.kafka_generation
        and keyed.kafka_partition = winners.winner.kafka_partition
        and keyed.kafka_offset = winners.winner.kafka_offset

)

select * from latest
