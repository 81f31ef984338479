with

ticks as (

    select * from {{ ref('stg_prices__ticks') }}

),

symbol_stats as (

    select * from {{ ref('prices_symbol_stats') }}

),

scored as (

    select
        ticks.ts,
        ticks.symbol,
        ticks.price,
        (ticks.price - symbol_stats.mean_price) / symbol_stats.stddev_price as z_score,
        ticks.kafka_partition,
        ticks.kafka_offset

    from ticks
    inner join symbol_stats on ticks.symbol = symbol_stats.symbol
    where symbol_stats.stddev_price > 0

)

select * from scored
where abs(z_score) > 3
order by symbol, ts
