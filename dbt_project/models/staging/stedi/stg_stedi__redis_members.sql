{#-
  The one decoding of the Redis change feed: a row per record that holds no customer (with
  why), and a row per distinct member of each `Customer` payload (decoded, with why it is left
  out, if it is). stg_stedi__customers keeps the members without a reason, stedi_rejected_rows
  counts the rest, so every record is accounted for once by the same rules.
-#}

with

source as (

    select * from {{ raw_source('redis_server') }}

),

records as (

    select
        case when json_valid(_value) then json_type(_value) end = 'OBJECT' as is_object,
        coalesce(_tombstone, false) as is_tombstone,
        _value,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset

    from source

),

payloads as (

    select
        case when is_object and not is_tombstone then cast(_value as json) end as payload,
        is_tombstone,
        kafka_timestamp,
        kafka_partition,
        kafka_offset

    from records

),

-- Field names in any case; both spellings of the entry list (`zSetEntries`, `zsetEntries`) are
-- read, each entry numbered by its place in its list: the lists are copies of each other.
keyed as (

    select
        {{ json_text('payload', 'key') }} as key_text,
        {{ from_base64_text(json_text('payload', 'key')) }} as redis_key,
        flatten(list_transform(
            list_filter({{ json_fields('payload', 'zsetEntries') }}, l -> json_type(l) = 'ARRAY'),
            (l, list_index) -> list_transform(
                cast(l as json[]),
                (entry, entry_position) -> {'list_index': list_index, 'entry_position': entry_position, 'entry': entry}
            )
        )) as entries,
        len(list_filter({{ json_fields('payload', 'zsetEntries') }}, l -> json_type(l) = 'ARRAY')) as entry_lists,
        payload,
        is_tombstone,
        kafka_timestamp,
        kafka_partition,
        kafka_offset

    from payloads

),

records_judged as (

    select
        *,
        case
            when is_tombstone then 'tombstone'
            when payload is null then 'not a JSON object'
            when key_text is null then 'no key'
            when redis_key is null then 'key not base64'
            -- Other simulators share the Redis and the topic; the key is named, so each has its count.
            when redis_key <> 'Customer' then 'Redis key ' || left(redis_key, 40) || ', not Customer'
            when entry_lists = 0 then 'no entry list'
            when len(entries) = 0 then 'empty entry list'
        end as rejection_reason

    from keyed

),

candidates as (

    select
        entry.list_index as list_index,
        entry.entry_position as entry_position,
        case when json_type(entry.entry) = 'OBJECT' then {{ json_text('entry.entry', 'element') }} end as element,
        case
            when json_type(entry.entry) = 'OBJECT' then {{ from_base64_text(json_text('entry.entry', 'element')) }}
        end as member_text,
        json_type(entry.entry) = 'OBJECT' as entry_is_object,
        redis_key,
        kafka_timestamp,
        kafka_partition,
        kafka_offset

    from (
        select unnest(entries) as entry, redis_key, kafka_timestamp, kafka_partition, kafka_offset
        from records_judged
        where rejection_reason is null
    )

),

candidates_judged as (

    select
        *,
        case
            when not entry_is_object then 'entry not a JSON object'
            when element is null then 'entry without element'
            when member_text is null then 'entry element not base64'
            when not coalesce(case when json_valid(member_text) then json_type(member_text) end = 'OBJECT', false)
                then 'entry element not a JSON object'
        end as entry_reason

    from candidates

),

placed as (

    select
        *,
        bool_or(entry_reason is null) over (partition by kafka_partition, kafka_offset, entry_position) as place_decoded

    from candidates_judged

),

-- An entry one list spells badly is made up for by a good entry at the same place in the
-- other list; each distinct member counts once per payload, however many lists carry it.
entries_kept as (

    select * exclude (place_decoded)
    from placed
    where entry_reason is null or not place_decoded
    qualify row_number() over (
        partition by
            kafka_partition,
            kafka_offset,
            case when entry_reason is null then 'member ' || member_text else 'place ' || entry_position end
        order by list_index
    ) = 1

),

members as (

    select
        entry_position,
        redis_key,
        {{ json_text('member', 'customerName') }} as customer_name,
        {{ json_text('member', 'email') }} as email,
        {{ json_text('member', 'phone') }} as phone,
        try_cast({{ json_text('member', 'birthDay') }} as date) as birth_day,
        entry_reason,
        kafka_timestamp,
        kafka_partition,
        kafka_offset

    from (
        -- Only a member that decoded to an object is read as JSON.
        select *, case when entry_reason is null then cast(member_text as json) end as member
        from entries_kept
    )

),

members_judged as (

    select
        * exclude (entry_reason),
        coalesce(
            entry_reason,
            case
                when email is null then 'member without email'
                when birth_day is null then 'member without birthDay'
            end
        ) as rejection_reason

    from members

),

-- A customer written again (a new phone, a corrected birthday): the latest write counts.
latest as (

    select
        * exclude (rejection_reason),
        case
            when rejection_reason is null
                and row_number() over (
                    partition by email, rejection_reason is null
                    order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc, entry_position desc
                ) > 1
                then 'superseded by a later write of the same email'
            else rejection_reason
        end as rejection_reason

    from members_judged

),

accounted as (

    select
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        cast(null as bigint) as entry_position,
        redis_key,
        cast(null as varchar) as customer_name,
        cast(null as varchar) as email,
        cast(null as varchar) as phone,
        cast(null as date) as birth_day,
        rejection_reason

    from records_judged
    where rejection_reason is not null

    union all

    select
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        entry_position,
        redis_key,
        customer_name,
        email,
        phone,
        birth_day,
        rejection_reason

    from latest

)

select * from accounted
