with

texts as (

{{ exported_rows(raw_source('carepay_invoice_items'), ['ID', 'STATUS', 'DATE_CREATED', 'INVOICE_ID', 'PRODUCT_ID', 'CURRENCY', 'AMOUNT']) }}

),

typed as (

    select
        try_cast(id as bigint) as invoice_item_id,
        status,
        try_cast(date_created as timestamp) as date_created,
        try_cast(invoice_id as bigint) as invoice_id,
        try_cast(product_id as bigint) as product_id,
        currency,
        {{ try_cast_text("amount", "decimal(19, 4)") }} as amount,
        case
            when coalesce(id, status, date_created, invoice_id, product_id, currency, amount) is null
                then 'every column null'
            when try_cast(product_id as bigint) < 0 then 'negative PRODUCT_ID'
            when {{ try_cast_text("amount", "decimal(19, 4)") }} = 0 then 'zero AMOUNT'
        end as rejection_reason,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from texts

)

select * from typed
{{ latest_copy('invoice_item_id') }}
