-- Every record of the STEDI topics that staging leaves out, with why: the count behind each rule.

with

redis_server as (

    select
        'redis_server' as source_table,
        coalesce(email, redis_key) as row_id,
        rejection_reason,
        entry_position,
        kafka_partition,
        kafka_offset,
        kafka_timestamp

    from {{ ref('stg_stedi__redis_members') }}
    where rejection_reason is not null

),

-- stg_stedi__risk_events leaves out tombstones only.
stedi_events as (

    select
        'stedi_events' as source_table,
        cast(_kafka_key as varchar) as row_id,
        'tombstone' as rejection_reason,
        cast(null as bigint) as entry_position,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from {{ raw_source('stedi_events') }}
    where coalesce(_tombstone, false)

),

rejected as (

    select * from redis_server
    union all
    select * from stedi_events

)

select * from rejected
