-- Every record of `prices` that staging leaves out, with why: stg_prices__ticks leaves out tombstones only.

with

source as (

    select * from {{ raw_source('prices') }}

),

rejected as (

    select
        'prices' as source_table,
        cast(_kafka_key as varchar) as row_id,
        'tombstone' as rejection_reason,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from source
    where coalesce(_tombstone, false)

)

select * from rejected
