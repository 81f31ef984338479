with

texts as (

{{ exported_rows(raw_source('carepay_claims'), ['ID', 'STATUS', 'TYPE', 'DATE_CREATED', 'DATE_MODIFIED', 'TREATMENT_ID', 'PROGRAM_ID', 'AMOUNT', 'CURRENCY']) }}

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
        {{ try_cast_text("amount", "decimal(19, 4)") }} as amount,
        currency,
        case
            when coalesce(id, status, type, date_created, date_modified, treatment_id, program_id, amount, currency) is null
                then 'every column null'
        end as rejection_reason,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from texts

)

select
    * replace (
        -- A modification time before the creation time cannot be right: it is dropped, and flagged.
        case when date_modified < date_created then null else date_modified end as date_modified
    ),
    coalesce(date_modified < date_created, false) as modified_before_created

from typed
{{ latest_copy('claim_id') }}
