with

source as (

    select * from {{ raw_source('office_diagnoses') }}
    where not coalesce(_tombstone, false)

),

-- The office may send a diagnosis again: the first copy to arrive is the diagnosis.
first_sent as (

    select
        cast(id as bigint) as diagnosis_id,
        cast(patient_id as bigint) as patient_id,
        upper(icd10_code) as icd10_code,
        cast(_kafka_timestamp at time zone 'UTC' as timestamp) as diagnosed_at,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from source
    qualify row_number() over (partition by id order by _kafka_timestamp, _kafka_partition, _kafka_offset) = 1

)

select * from first_sent
