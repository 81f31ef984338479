with

ticks as (

    select * from {{ ref('stg_prices__ticks') }}

),

symbol_stats as (

    select
        symbol,
        count(*) as tick_count,
        min(price) as min_price,
        max(price) as max_price,
        avg(price) as mean_price,
        {{ stddev_samp_or_null('price') }} as stddev_price,
        min(ts) as first_ts,
        max(ts) as last_ts

    from ticks
    group by symbol

)

select * from symbol_stats
order by symbol
