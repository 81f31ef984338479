{%- set raw = raw_source('cms_provider_services') -%}
{%- set columns = relation_columns(raw) -%}

with

source as (

    select * from {{ raw }}
    where not coalesce(_tombstone, false)

),

spelled as (

    select
        {%- for field, names in spellings('cms_provider_services').items() %}
        {{ spelled_text(columns, names) }} as {{ field }},
        {%- endfor %}
        {{ spelled(columns, [header_column('cms_provider_services', 'data_year')]) }} as data_year,
        _generation,
        _kafka_partition,
        _kafka_offset,
        _kafka_timestamp

    from source

),

typed as (

    select
        -- NPI and zip are identifiers: text, with the leading zeros a numeric loader drops put back.
        case when regexp_full_match(npi, '[0-9]{1,9}') then lpad(npi, 10, '0') else npi end as npi,
        last_org_name,
        first_name,
        middle_initial,
        credentials,
        upper(gender) as gender,
        upper(entity_code) as entity_code,
        street1,
        street2,
        city,
        case
            when regexp_full_match(zip, '[0-9]{1,4}') then lpad(zip, 5, '0')
            when regexp_full_match(zip, '[0-9]{6,8}') then lpad(zip, 9, '0')
            else zip
        end as zip,
        upper(state) as state,
        state_fips,
        ruca,
        ruca_description,
        upper(country) as country,
        provider_type,
        {{ yes_no('medicare_participation') }} as is_medicare_participant,
        upper(place_of_service) as place_of_service,
        upper(hcpcs_code) as hcpcs_code,
        hcpcs_description,
        {{ yes_no('hcpcs_drug_indicator') }} as is_drug,
        {{ clean_number('services') }} as services,
        {{ clean_number('beneficiaries', 'bigint') }} as beneficiaries,
        {{ clean_number('beneficiary_day_services', 'bigint') }} as beneficiary_day_services,
        {{ clean_number('avg_submitted_charge') }} as avg_submitted_charge,
        {{ clean_number('avg_allowed_amount') }} as avg_allowed_amount,
        {{ clean_number('avg_payment_amount') }} as avg_payment_amount,
        {{ clean_number('avg_standardized_amount') }} as avg_standardized_amount,
        try_cast(data_year as integer) as data_year,
        cast(_generation as integer) as kafka_generation,
        cast(_kafka_partition as integer) as kafka_partition,
        cast(_kafka_offset as bigint) as kafka_offset,
        cast(_kafka_timestamp as timestamptz) as kafka_timestamp

    from spelled
    -- The CMS .txt files carry a copyright notice as their first data row (counted in cms_rejected_rows).
    where not {{ cms_copyright_row('npi') }}

)

select * from typed
