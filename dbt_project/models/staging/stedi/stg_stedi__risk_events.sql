with

source as (

    select * from {{ raw_source('stedi_events') }}
    where not coalesce(_tombstone, false)

),

events as (

    select
        customer as email,
        cast(score as double) as score,
        try_cast(riskDate as timestamptz) as risk_date,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_generation as integer) as kafka_generation,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from source

)

select * from events
