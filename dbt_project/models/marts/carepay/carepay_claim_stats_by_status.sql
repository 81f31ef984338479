with

claims as (

    select * from {{ ref('int_carepay__claims') }}

),

stats as (

    select
        status as claim_status,
        count(*) as claims,
        sum(amount) as total_amount,
        max(amount) as max_amount,
        min(amount) as min_amount,
        avg(amount) as avg_amount

    from claims
    group by status

)

select * from stats
