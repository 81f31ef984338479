with

provider_services as (

    select * from {{ ref('int_cms__provider_services_deduped') }}

),

-- Evaluation-and-management visits: 99201-99205 for a new patient, 99211-99215 for an
-- established one; the last digit is the level, and a higher level is a longer visit.
levelled as (

    select
        place_of_service,
        case
            when hcpcs_code in ('99201', '99202', '99203', '99204', '99205') then 'new patient'
            when hcpcs_code in ('99211', '99212', '99213', '99214', '99215') then 'established patient'
            else 'other services'
        end as visit_type,
        npi,
        hcpcs_code,
        cast(services as double) as services,
        beneficiaries,
        cast(avg_allowed_amount as double) as avg_allowed_amount,
        cast(avg_payment_amount as double) as avg_payment_amount

    from provider_services

),

by_level as (

    select
        place_of_service,
        visit_type,
        case when visit_type <> 'other services' then cast(right(hcpcs_code, 1) as integer) end as visit_level,
        count(distinct npi) as providers,
        sum(services) as services,
        sum(beneficiaries) as beneficiaries,
        sum(services * avg_allowed_amount) as allowed_amount,
        sum(services * avg_payment_amount) as payment_amount

    from levelled
    group by all

)

select
    place_of_service,
    visit_type,
    visit_level,
    providers,
    services,
    beneficiaries,
    allowed_amount / nullif(services, 0) as avg_allowed_amount,
    payment_amount / nullif(services, 0) as avg_payment_amount,
    allowed_amount,
    payment_amount

from by_level
