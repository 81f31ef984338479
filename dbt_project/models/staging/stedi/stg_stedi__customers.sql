with

source as (

    select * from {{ raw_source('redis_server') }}
    where not coalesce(_tombstone, false)

),

payloads as (

    select
        cast(_value as json) as payload,
        _timestamp,
        _partition,
        _offset

    from source
    where json_valid(_value) and json_type(_value) = 'OBJECT'

),

-- Only members of the `Customer` sorted set are customers; other keys share the topic.
customer_sets as (

    select
        {{ json_field('payload', 'zsetEntries') }} as entries,
        _timestamp,
        _partition,
        _offset

    from payloads
    where {{ from_base64_text(json_text('payload', 'key')) }} = 'Customer'

),

entries as (

    select
        unnest(cast(entries as json[])) as entry,
        _timestamp,
        _partition,
        _offset

    from customer_sets
    where json_type(entries) = 'ARRAY'

),

members as (

    select
        {{ from_base64_text(json_text('entry', 'element')) }} as member_text,
        _timestamp,
        _partition,
        _offset

    from entries
    where json_type(entry) = 'OBJECT'

),

customers as (

    select
        {{ json_text('cast(member_text as json)', 'customerName') }} as customer_name,
        {{ json_text('cast(member_text as json)', 'email') }} as email,
        {{ json_text('cast(member_text as json)', 'phone') }} as phone,
        try_cast({{ json_text('cast(member_text as json)', 'birthDay') }} as date) as birth_day,
        cast(_timestamp as timestamptz) as kafka_timestamp,
        cast(_partition as integer) as kafka_partition,
        cast(_offset as bigint) as kafka_offset

    from members
    where json_valid(member_text) and json_type(member_text) = 'OBJECT'

),

-- A customer written again (a new phone, a corrected birthday): the latest write counts.
latest as (

    select
        *,
        year(birth_day) as birth_year

    from customers
    where email is not null and birth_day is not null
    qualify row_number() over (partition by email order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc) = 1

)

select * from latest
