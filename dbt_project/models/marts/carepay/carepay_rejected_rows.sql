-- Every exported row the cleaning rules set aside, with why: the count behind each rule.
{% set tables = [
    ('invoices', 'invoice_id'),
    ('invoice_items', 'invoice_item_id'),
    ('claims', 'claim_id'),
    ('treatments', 'treatment_id'),
] %}

with

{% for table, id in tables %}
{{ table }} as (

    select
        '{{ table }}' as source_table,
        {{ id }} as row_id,
        rejection_reason,
        kafka_partition,
        kafka_offset,
        kafka_timestamp

    from {{ ref('stg_carepay__' ~ table) }}
    where rejection_reason is not null

),

{% endfor %}

rejected as (

    {% for table, _ in tables %}
    select * from {{ table }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from rejected
