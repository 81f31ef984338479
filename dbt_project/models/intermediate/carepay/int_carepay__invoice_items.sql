with

items as (

    select * from {{ ref('stg_carepay__invoice_items') }}
    where rejection_reason is null

),

invoices as (

    select invoice_id, date_created from {{ ref('int_carepay__invoices') }}

),

-- An item exported without its DATE_CREATED takes its invoice's (itself perhaps its treatment's).
filled as (

    select
        items.* replace (coalesce(items.date_created, invoices.date_created) as date_created),
        items.date_created is null and invoices.date_created is not null as date_from_invoice

    from items
    left join invoices using (invoice_id)

)

select * exclude (rejection_reason) from filled
