{%- set raw = raw_or_empty(source('raw', 'carepay_invoice_items')) -%}
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
        {{ exported_text(columns, 'INVOICE_ID') }} as invoice_id,
        {{ exported_text(columns, 'PRODUCT_ID') }} as product_id,
        {{ exported_text(columns, 'CURRENCY') }} as currency,
        {{ exported_text(columns, 'AMOUNT') }} as amount,
        _timestamp,
        _partition,
        _offset

    from source

),

typed as (

    select
        try_cast(id as bigint) as invoice_item_id,
        status,
        try_cast(date_created as timestamp) as date_created,
        try_cast(invoice_id as bigint) as invoice_id,
        try_cast(product_id as bigint) as product_id,
        currency,
        try_cast(amount as decimal(19, 4)) as amount,
        case
            when coalesce(id, status, date_created, invoice_id, product_id, currency, amount) is null
                then 'every column null'
            when try_cast(product_id as bigint) < 0 then 'negative PRODUCT_ID'
            when try_cast(amount as decimal(19, 4)) = 0 then 'zero AMOUNT'
        end as rejection_reason,
        cast(_timestamp as timestamptz) as kafka_timestamp,
        cast(_partition as integer) as kafka_partition,
        cast(_offset as bigint) as kafka_offset

    from texts

)

select * from typed
qualify invoice_item_id is null
    or row_number() over (partition by invoice_item_id order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc) = 1
