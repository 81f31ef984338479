-- Every office record staging leaves out, with why. A record is left out when its coordinates
-- are not among its staging model's rows: staging leaves out tombstones, and keeps one copy of
-- each id (the first of a claim or diagnosis, the latest of a patient), so any other record is
-- a copy that lost to another one.
{% set topics = [
    ('claims', 'duplicate id: an earlier copy counts'),
    ('diagnoses', 'duplicate id: an earlier copy counts'),
    ('patients', 'superseded by a later copy'),
] %}

with

{% for table, copy_reason in topics %}
{{ table }} as (

    select
        'office_{{ table }}' as source_table,
        coalesce(cast(raw.id as varchar), cast(raw._kafka_key as varchar)) as row_id,
        case when coalesce(raw._tombstone, false) then 'tombstone' else '{{ copy_reason }}' end as rejection_reason,
        cast(raw._kafka_partition as integer) as kafka_partition,
        cast(raw._kafka_offset as bigint) as kafka_offset,
        cast(raw._kafka_timestamp as timestamptz) as kafka_timestamp

    from {{ raw_source('office_' ~ table) }} as raw
    anti join {{ ref('stg_office__' ~ table) }} as kept
        on raw._kafka_partition = kept.kafka_partition and raw._kafka_offset = kept.kafka_offset

),

{% endfor %}

rejected as (

    {% for table, _ in topics %}
    select * from {{ table }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from rejected
