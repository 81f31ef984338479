with

texts as (

{{ exported_rows(raw_source('carepay_treatments'), ['ID', 'STATUS', 'TYPE', 'DATE_CREATED', 'DATE_MODIFIED', 'DATE_SUBMITTED', 'DATE_TREATMENT', 'PROVIDER_ID', 'PROGRAM_ID']) }}

),

-- The export that lacked its TYPE value put DATE_CREATED under TYPE and every later value one
-- column early: a date where TYPE belongs gives such a row away, and it is moved back.
aligned as (

    select
        id,
        status,
        shifted,
        case when shifted then null else type end as type,
        case when shifted then type else date_created end as date_created,
        case when shifted then date_created else date_modified end as date_modified,
        case when shifted then date_modified else date_submitted end as date_submitted,
        case when shifted then date_submitted else date_treatment end as date_treatment,
        case when shifted then date_treatment else provider_id end as provider_id,
        case when shifted then provider_id else program_id end as program_id,
        _kafka_timestamp,
        _kafka_partition,
        _kafka_offset

    from (select *, try_cast(type as timestamp) is not null as shifted from texts)

),

typed as (

    select
        try_cast(id as bigint) as treatment_id,
        status,
        type as treatment_type,
        -- MySQL writes an impossible date as 0000-00-00 00:00:00: no date.
        try_cast(date_created as timestamp) as date_created,
        try_cast(date_modified as timestamp) as date_modified,
        try_cast(date_submitted as timestamp) as date_submitted,
        try_cast(date_treatment as timestamp) as date_treatment,
        try_cast(provider_id as bigint) as provider_id,
        try_cast(program_id as bigint) as program_id,
        shifted as was_shifted,
        case
            when coalesce(id, status, type, date_created, date_modified, date_submitted, date_treatment, provider_id, program_id) is null
                then 'every column null'
            -- After the repair a value still in the wrong place means the row cannot be trusted.
            when provider_id is not null and try_cast(provider_id as bigint) is null
                then 'columns out of place: PROVIDER_ID ' || provider_id
            when date_created is not null and try_cast(date_created as timestamp) is null
                and date_created not like '0000-00-00%'
                then 'columns out of place: DATE_CREATED ' || date_created
        end as rejection_reason,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from aligned

)

select
    * replace (case when date_modified < date_created then null else date_modified end as date_modified),
    coalesce(date_modified < date_created, false) as modified_before_created

from typed
{{ latest_copy('treatment_id') }}
