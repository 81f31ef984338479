{%- set raw = raw_source('cms_provider_services') -%}
{%- set columns = relation_columns(raw) -%}

-- Every record of `cms.provider_services` that stg_cms__provider_services leaves out, with why:
-- tombstones and the copyright row of the .txt files.

with

source as (

    select * from {{ raw }}

),

spelled as (

    select
        {{ spelled_text(columns, spellings('cms_provider_services').get('npi', [])) }} as npi,
        coalesce(_tombstone, false) as is_tombstone,
        _kafka_key,
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
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from spelled
    where is_tombstone or {{ cms_copyright_row('npi') }}

)

select * from rejected
