{#-
  Every record of `cms.provider_services` that stg_cms__provider_services leaves out, with why:
  tombstones and the copyright row of the .txt files.

  Spelling every raw record's NPI to find these few took a second at 10M records, at every
  build. The table grows incrementally instead: a build reads only the records past those an
  earlier build examined, which `record_examined` writes in the same transaction as the rows
  (so a build that fails leaves both as they were). Few records are rejected: the table itself
  cannot say how far it has read.
-#}

{{
    config(
        materialized='incremental',
        unique_key=['kafka_generation', 'kafka_partition', 'kafka_offset'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ record_examined(raw_source('cms_provider_services'), raw_coordinates()) }}"],
    )
}}

{%- set raw = raw_source('cms_provider_services') -%}
{%- set columns = relation_columns(raw) -%}

with

source as (

    select * from {{ examined_past(raw, raw_coordinates()) if is_incremental() else raw }}

),

spelled as (

    select
        {{ spelled_text(columns, spellings('cms_provider_services').get('npi', [])) }} as npi,
        coalesce(_tombstone, false) as is_tombstone,
        _kafka_key,
        _generation,
        _kafka_partition,
        _kafka_offset,
        _kafka_timestamp

    from source

),

rejected as (

    select
        'cms_provider_services' as source_table,
        case when is_tombstone then cast(_kafka_key as varchar) else npi end as row_id,
        case when is_tombstone then 'tombstone' else 'copyright row' end as rejection_reason,
        cast(coalesce(_generation, 0) as integer) as kafka_generation,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from spelled
    where is_tombstone or {{ cms_copyright_row('npi') }}

)

select * from rejected
