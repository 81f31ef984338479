{%- set raw = raw_or_empty(source('raw', 'carepay_claims')) -%}
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
        {{ exported_text(columns, 'TYPE') }} as type,
        {{ exported_text(columns, 'DATE_CREATED') }} as date_created,
        {{ exported_text(columns, 'DATE_MODIFIED') }} as date_modified,
        {{ exported_text(columns, 'TREATMENT_ID') }} as treatment_id,
        {{ exported_text(columns, 'PROGRAM_ID') }} as program_id,
        {{ exported_text(columns, 'AMOUNT') }} as amount,
        {{ exported_text(columns, 'CURRENCY') }} as currency,
        _timestamp,
        _partition,
        _offset

    from source

),

typed as (

    select
        try_cast(id as bigint) as claim_id,
        status,
        type as claim_type,
        try_cast(date_created as timestamp) as date_created,
        try_cast(date_modified as timestamp) as date_modified,
        try_cast(treatment_id as bigint) as treatment_id,
        try_cast(program_id as bigint) as program_id,
        try_cast(amount as decimal(19, 4)) as amount,
        currency,
        case
            when coalesce(id, status, type, date_created, date_modified, treatment_id, program_id, amount, currency) is null
                then 'every column null'
        end as rejection_reason,
        cast(_timestamp as timestamptz) as kafka_timestamp,
        cast(_partition as integer) as kafka_partition,
        cast(_offset as bigint) as kafka_offset

    from texts

)

select
    * replace (
        -- A modification time before the creation time cannot be right: it is dropped, and flagged.
        case when date_modified < date_created then null else date_modified end as date_modified
    ),
    coalesce(date_modified < date_created, false) as modified_before_created

from typed
qualify claim_id is null
    or row_number() over (partition by claim_id order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc) = 1
