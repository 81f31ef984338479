with

source as (

    select * from {{ raw_source('office_patients') }}
    where not coalesce(_tombstone, false)

),

-- The patient list is re-published by each producer run: the latest copy of each patient counts.
latest as (

    select
        cast(id as bigint) as patient_id,
        first_name,
        last_name,
        try_cast(birth_date as date) as birth_date,
        gender,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from source
    qualify row_number() over (partition by id order by _kafka_timestamp desc, _kafka_partition desc, _kafka_offset desc) = 1

)

select * from latest
