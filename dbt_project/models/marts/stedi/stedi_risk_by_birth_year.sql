with

customer_risk as (

    select * from {{ ref('stedi_customer_risk') }}

),

by_year as (

    select
        birth_year,
        count(*) as customers,
        avg(score) as avg_score

    from customer_risk
    group by birth_year

)

select * from by_year
