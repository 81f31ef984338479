with

claims as (

    select * from {{ ref('stg_carepay__claims') }}
    where rejection_reason is null

),

treatments as (

    select treatment_id, date_created from {{ ref('stg_carepay__treatments') }}
    where rejection_reason is null

),

-- A claim exported without its DATE_CREATED takes its treatment's.
filled as (

    select
        claims.* replace (coalesce(claims.date_created, treatments.date_created) as date_created),
        claims.date_created is null and treatments.date_created is not null as date_from_treatment

    from claims
    left join treatments using (treatment_id)

)

select * exclude (rejection_reason) from filled
