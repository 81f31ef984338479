with

customers as (

    select * from {{ ref('stg_stedi__customers') }}

),

latest_scores as (

    select * from {{ ref('stg_stedi__risk_events') }}
    qualify row_number() over (
        partition by email
        order by risk_date desc nulls last, kafka_timestamp desc, kafka_partition desc, kafka_offset desc
    ) = 1

),

joined as (

    select
        latest_scores.email as customer,
        latest_scores.score,
        latest_scores.email,
        customers.birth_year,
        customers.customer_name,
        latest_scores.risk_date

    from latest_scores
    inner join customers on latest_scores.email = customers.email

)

select * from joined
