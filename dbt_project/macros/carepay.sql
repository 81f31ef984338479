{#- The kept rows of a CarePay staging model, a missing DATE_CREATED taken from the row's treatment. -#}
{% macro with_treatment_date(staged) %}
with

kept as (

    select * from {{ staged }}
    where rejection_reason is null

),

treatments as (

    select treatment_id, date_created from {{ ref('stg_carepay__treatments') }}
    where rejection_reason is null

),

filled as (

    select
        kept.* replace (coalesce(kept.date_created, treatments.date_created) as date_created),
        kept.date_created is null and treatments.date_created is not null as date_from_treatment

    from kept
    left join treatments using (treatment_id)

)

select * exclude (rejection_reason) from filled
{%- endmacro %}
