{#-
  One row per procedure, state and provider: the provider's services and what Medicare paid for
  them, over its places of service and data years. The marts that compare providers
  (cms_cost_by_region, cms_procedure_cost_variation) and cms_procedure_reach share it, instead of
  each grouping the 5M deduplicated rows again.

  Built incrementally where that is exact: a build recomputes, from the deduplicated rows, every
  procedure and provider pair that rows new to int_cms__provider_services_deduped touch (found
  past what this model examined, `examined_past`), and replaces that pair's rows, whatever state
  they had: a re-sent row that moves a provider to another state leaves nothing stale behind.
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

with

provider_services as (

    select * from {{ deduped }}
    {%- if is_incremental() %}
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

)

select * from costs
