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
-#}

with

new_rows as (

    select * from {{ ref('stg_cms__provider_services') }}
    {% if is_incremental() %}
    where {{ offsets_past(this) }}
    {% endif %}

),

keyed as (

    select
        concat_ws('|', npi, hcpcs_code, place_of_service, coalesce(cast(data_year as varchar), '')) as provider_service_key,
        *
    from new_rows

),

latest as (

    select * from keyed
    qualify row_number() over (
        partition by provider_service_key
        order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc
    ) = 1

)

select * from latest
