with

treatments as (

    select * from {{ ref('stg_carepay__treatments') }}
    where rejection_reason is null

),

-- A treatment exported without its PROGRAM_ID takes it from the latest claim on it.
claim_programs as (

    select treatment_id, program_id
    from {{ ref('stg_carepay__claims') }}
    where rejection_reason is null and program_id is not null and treatment_id is not null
    qualify row_number() over (partition by treatment_id order by date_created desc nulls last, claim_id desc) = 1

),

filled as (

    select
        treatments.* replace (coalesce(treatments.program_id, claim_programs.program_id) as program_id),
        treatments.program_id is null and claim_programs.program_id is not null as program_from_claim

    from treatments
    left join claim_programs using (treatment_id)

)

select * exclude (rejection_reason) from filled
