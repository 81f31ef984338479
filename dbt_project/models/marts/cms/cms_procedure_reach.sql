with

provider_costs as (

    select * from {{ ref('int_cms__provider_procedure_costs') }}

),

reach as (

    select
        hcpcs_code,
        max(hcpcs_description) as hcpcs_description,
        count(distinct state) as states,
        count(*) filter (where is_providers_first_state) as providers,
        sum(services) as services,
        sum(beneficiaries) as beneficiaries,
        cast(sum(provider_service_rows) as bigint) as provider_service_rows

    from provider_costs
    group by hcpcs_code

),

ranked as (

    select
        *,
        row_number() over (order by providers, states, hcpcs_code) as reach_rank

    from reach

)

select * from ranked
