with

provider_costs as (

    select * from {{ ref('int_cms__provider_procedure_costs') }}

),

by_provider as (

    select
        hcpcs_code,
        state,
        npi,
        services,
        payment_amount / nullif(services, 0) as avg_payment

    from provider_costs

),

by_state as (

    select
        hcpcs_code,
        state,
        count(*) as providers,
        sum(services) as services,
        sum(services * avg_payment) / nullif(sum(services), 0) as avg_payment,
        {{ stddev_samp_or_null('avg_payment') }} as within_state_stddev_payment,
        {{ stddev_samp_or_null('avg_payment') }} / nullif(avg(avg_payment), 0) as within_state_cv_payment,
        min(avg_payment) as min_provider_payment,
        max(avg_payment) as max_provider_payment

    from by_provider
    group by hcpcs_code, state

),

across_states as (

    select
        *,
        count(*) over (partition by hcpcs_code) as states_for_code,
        rank() over (partition by hcpcs_code order by avg_payment desc) as cost_rank_in_code,
        max(avg_payment) over (partition by hcpcs_code)
            / nullif(min(avg_payment) over (partition by hcpcs_code), 0) as state_cost_ratio

    from by_state

)

select * from across_states
