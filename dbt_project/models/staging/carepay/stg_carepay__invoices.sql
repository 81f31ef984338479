with

texts as (

{{ exported_rows(raw_source('carepay_invoices'), ['ID', 'STATUS', 'DATE_CREATED', 'TREATMENT_ID']) }}

),

typed as (

    select
        try_cast(id as bigint) as invoice_id,
        status,
        try_cast(date_created as timestamp) as date_created,
        try_cast(treatment_id as bigint) as treatment_id,
        case when id is null and status is null and date_created is null and treatment_id is null
            then 'every column null'
        end as rejection_reason,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from texts

)

select * from typed
-- A row exported again: the latest copy counts.
{{ latest_copy('invoice_id') }}
