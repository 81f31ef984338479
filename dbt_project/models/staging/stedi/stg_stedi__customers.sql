with

-- The feed's decoding and its rules live in stg_stedi__redis_members; a customer is a member
-- none of them left out (one per email: the latest write).
members as (

    select * from {{ ref('stg_stedi__redis_members') }}
    where rejection_reason is null

),

customers as (

    select
        customer_name,
        email,
        phone,
        birth_day,
        kafka_timestamp,
        kafka_partition,
        kafka_offset,
        year(birth_day) as birth_year

    from members

)

select * from customers
