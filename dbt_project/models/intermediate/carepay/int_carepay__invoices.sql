with

invoices as (

    select * from {{ ref('stg_carepay__invoices') }}
    where rejection_reason is null

),

treatments as (

    select treatment_id, date_created from {{ ref('stg_carepay__treatments') }}
    where rejection_reason is null

),

-- An invoice exported without its DATE_CREATED (40% of the real export) takes its treatment's.
filled as (

    select
        invoices.* replace (coalesce(invoices.date_created, treatments.date_created) as date_created),
        invoices.date_created is null and treatments.date_created is not null as date_from_treatment

    from invoices
    left join treatments using (treatment_id)

)

select * exclude (rejection_reason) from filled
