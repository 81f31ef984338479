{{
    config(
        materialized='incremental',
        unique_key=['window_start', 'category'],
        incremental_strategy='delete+insert',
    )
}}

{#-
  Revenue per 10-minute window of claim time from the patients the office watches: those
  diagnosed with amnesia (R41.3) or asthma (J44.9). An incremental build recomputes the windows
  that new records can change: those of claims that arrived since the last build (less
  `office_late_minutes`, 60, for records that reach the lake late), and every window with a
  claim of a patient whose watched diagnosis arrived since then.
-#}

with

all_claims as (

    select
        *,
        time_bucket(interval 10 minute, claimed_at) as window_start

    from {{ ref('stg_office__claims') }}

),

diagnoses as (

    select
        patient_id,
        case icd10_code when 'R41.3' then 'Amnesia' when 'J44.9' then 'Asthma' end as category,
        diagnosed_at

    from {{ ref('stg_office__diagnoses') }}
    where icd10_code in ('R41.3', 'J44.9')

),

{% if is_incremental() %}
cutoff as (

    select
        coalesce(max(window_start), timestamp '1970-01-01') - interval {{ var('office_late_minutes', 60) }} minute as cutoff_at
    from {{ this }}

),

touched as (

    select window_start from all_claims where claimed_at >= (select cutoff_at from cutoff)
    union
    select all_claims.window_start
    from all_claims
    inner join diagnoses using (patient_id)
    where diagnoses.diagnosed_at >= (select cutoff_at from cutoff)

),

claims as (

    select * from all_claims
    where window_start in (select window_start from touched)

),
{% else %}
claims as (

    select * from all_claims

),
{% endif %}

watched as (

    select distinct patient_id, category from diagnoses

),

windows as (

    select
        claims.window_start,
        claims.window_start + interval 10 minute as window_end,
        watched.category,
        sum(claims.price) as revenue,
        count(*) as claims

    from claims
    inner join watched using (patient_id)
    group by claims.window_start, watched.category

)

select * from windows
