with

provider_costs as (

    select * from {{ ref('int_cms__provider_procedure_costs') }}

),

-- One average per provider: a provider billing a code in a facility and in an office (or in
-- several years, or states) gets its service-weighted average, so no provider counts twice.
by_provider as (

    select
        hcpcs_code,
        npi,
        provider_services as services,
        provider_payment_amount / nullif(provider_services, 0) as avg_payment

    from provider_costs
    where is_providers_first_state

),

variation as (

    select
        hcpcs_code,
        count(*) as providers,
        sum(services) as services,
        sum(services * avg_payment) / nullif(sum(services), 0) as mean_payment,
        avg(avg_payment) as provider_mean_payment,
        -- the three quantiles in one sort of each code's providers, not three
        quantile_cont(avg_payment, [0.1, 0.5, 0.9]) as quantiles,
        {{ stddev_samp_or_null('avg_payment') }} as stddev_payment,
        min(avg_payment) as min_payment,
        max(avg_payment) as max_payment

    from by_provider
    group by hcpcs_code

)

select
    hcpcs_code,
    providers,
    services,
    mean_payment,
    provider_mean_payment,
    quantiles[2] as median_payment,
    stddev_payment,
    quantiles[1] as p10_payment,
    quantiles[3] as p90_payment,
    min_payment,
    max_payment,
    stddev_payment / nullif(provider_mean_payment, 0) as cv_payment

from variation
