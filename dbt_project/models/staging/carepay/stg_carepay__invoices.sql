{%- set raw = raw_or_empty(source('raw', 'carepay_invoices')) -%}
{%- set columns = relation_columns(raw) -%}

with

source as (

    select * from {{ raw }}
    where not coalesce(_tombstone, false)

),

texts as (

    select
        {{ exported_text(columns, 'ID') }} as id,
        {{ exported_text(columns, 'STATUS') }} as status,
        {{ exported_text(columns, 'DATE_CREATED') }} as date_created,
        {{ exported_text(columns, 'TREATMENT_ID') }} as treatment_id,
        _timestamp,
        _partition,
        _offset

    from source

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
        cast(_timestamp as timestamptz) as kafka_timestamp,
        cast(_partition as integer) as kafka_partition,
        cast(_offset as bigint) as kafka_offset

    from texts

)

select * from typed
-- A row exported again: the latest copy counts.
qualify invoice_id is null
    or row_number() over (partition by invoice_id order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc) = 1
