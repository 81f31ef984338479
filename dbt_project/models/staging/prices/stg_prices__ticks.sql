with

source as (

    select * from {{ raw_source('prices') }}

),

ticks as (

    select
        cast(ts as timestamp) as ts,
        cast(symbol as varchar) as symbol,
        cast(price as double) as price,
        cast(_generation as integer) as kafka_generation,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from source
    where not coalesce(_tombstone, false)

)

select * from ticks
