with

provider_services as (

    select * from {{ ref('int_cms__provider_services_deduped') }}

),

reach as (

    select
        hcpcs_code,
        max(hcpcs_description) as hcpcs_description,
        count(distinct state) as states,
        count(distinct npi) as providers,
        sum(cast(services as double)) as services,
        sum(beneficiaries) as beneficiaries,
        count(*) as provider_service_rows

    from provider_services
    group by hcpcs_code

),

ranked as (

    select
        *,
        row_number() over (order by providers, states, hcpcs_code) as reach_rank

    from reach

)

select * from ranked
