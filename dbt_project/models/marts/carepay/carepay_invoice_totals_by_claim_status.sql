with

invoices as (

    select * from {{ ref('int_carepay__invoices') }}

),

items as (

    select invoice_id, count(*) as items, sum(amount) as amount
    from {{ ref('int_carepay__invoice_items') }}
    group by invoice_id

),

-- The status of the claim on the invoice's treatment: its latest claim when it has several.
treatment_claims as (

    select treatment_id, status as claim_status
    from {{ ref('int_carepay__claims') }}
    qualify row_number() over (
        partition by treatment_id order by date_modified desc nulls last, date_created desc nulls last, claim_id desc
    ) = 1

),

totals as (

    select
        coalesce(treatment_claims.claim_status, 'NO CLAIM') as claim_status,
        count(*) as invoices,
        coalesce(sum(items.items), 0) as invoice_items,
        coalesce(sum(items.amount), 0) as total_item_amount

    from invoices
    left join items using (invoice_id)
    left join treatment_claims using (treatment_id)
    group by all

)

select * from totals
