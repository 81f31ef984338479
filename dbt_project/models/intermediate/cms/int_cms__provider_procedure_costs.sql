{#-
  One row per procedure, state and provider: the provider's services and what Medicare paid for
  them, over its places of service and data years. The marts that compare providers
  (cms_cost_by_region, cms_procedure_cost_variation) and cms_procedure_reach share it, instead of
  each grouping the 5M deduplicated rows again.

  Built incrementally where that is exact: a build recomputes, from the deduplicated rows, every
  procedure and provider pair that rows new to int_cms__provider_services_deduped touch (found
  past what this model examined, `examined_past`), and replaces that pair's rows, whatever state
  they had: a re-sent row that moves a provider to another state leaves nothing stale behind.

  Each row also carries its provider's totals of the procedure over every state, and marks one
  row per provider and procedure: the pair's rows are always rebuilt together, so these stay
  exact, and the marts that compare providers read them instead of grouping 4.5M rows by
  provider again (0.7 s and 0.55 s at every build, 0.25 s and 0.12 s so). A table built before
  these columns existed is rebuilt whole once (`complete`): its rows would read them as null.
-#}

{{
    config(
        materialized='incremental',
        unique_key=['hcpcs_code', 'npi'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ record_examined(ref('int_cms__provider_services_deduped')) }}"],
    )
}}

{%- set deduped = ref('int_cms__provider_services_deduped') -%}
{%- set complete = is_incremental() and has_column(this, 'is_providers_first_state') -%}

with

provider_services as (

    select * from {{ deduped }}
    {%- if complete %}
    where (hcpcs_code, npi) in (select (hcpcs_code, npi) from {{ examined_past(deduped) }} as new_rows)
    {%- endif %}

),

costs as (

    select
        hcpcs_code,
        state,
        npi,
        sum(cast(services as double)) as services,
        sum(cast(services as double) * cast(avg_payment_amount as double)) as payment_amount,
        -- bigint, not the hugeint a sum gives: a hugeint column reads ten times slower (0.85 s)
        cast(sum(beneficiaries) as bigint) as beneficiaries,
        count(*) as provider_service_rows,
        max(hcpcs_description) as hcpcs_description

    from provider_services
    group by hcpcs_code, state, npi

),

with_provider_totals as (

    select
        *,
        sum(services) over provider as provider_services,
        sum(payment_amount) over provider as provider_payment_amount,
        row_number() over (provider order by state) = 1 as is_providers_first_state

    from costs
    window provider as (partition by hcpcs_code, npi)

)

select * from with_provider_totals
