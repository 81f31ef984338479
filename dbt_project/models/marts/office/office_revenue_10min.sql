{{
    config(
        materialized='incremental',
        unique_key=['window_start', 'category'],
        incremental_strategy='delete+insert',
    )
}}

{#-
  Revenue per 10-minute window of claim time from the patients the office watches: those
  diagnosed with amnesia (R41.3) or asthma (J44.9) at or before the claim. A diagnosis only
  changes windows from its own time on, so an incremental build recomputes the windows from
  the last one built, less `office_late_minutes` (60) for records that reach the lake late.
-#}

with

claims as (

    select * from {{ ref('stg_office__claims') }}
    {% if is_incremental() %}
    where claimed_at >= (
        select coalesce(max(window_start), timestamp '1970-01-01') - interval {{ var('office_late_minutes', 60) }} minute
        from {{ this }}
    )
    {% endif %}

),

watched as (

    select
        patient_id,
        case icd10_code when 'R41.3' then 'Amnesia' when 'J44.9' then 'Asthma' end as category,
        min(diagnosed_at) as first_diagnosed_at

    from {{ ref('stg_office__diagnoses') }}
    where icd10_code in ('R41.3', 'J44.9')
    group by all

),

categorised as (

    select
        time_bucket(interval 10 minute, claims.claimed_at) as window_start,
        watched.category,
        claims.price

    from claims
    inner join watched
        on claims.patient_id = watched.patient_id
        and watched.first_diagnosed_at <= claims.claimed_at

),

windows as (

    select
        window_start,
        window_start + interval 10 minute as window_end,
        category,
        sum(price) as revenue,
        count(*) as claims

    from categorised
    group by window_start, category

)

select * from windows
