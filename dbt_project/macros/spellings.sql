{#
  Streams whose files name one field differently from release to release land in the raw
  layer with every spelling as its own column (Parquet keeps each file's names; a reader
  that meets two names differing only in case suffixes the second `_1`). These macros pick,
  at compile time, the spellings that are really there, so a model never names a column
  that no file has.
#}

{% macro relation_columns(relation) %}
  {%- if not execute -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set described = run_query("describe select * from " ~ relation) -%}
  {{ return(described.columns[0].values() | list) }}
{% endmacro %}


{#- Whether a built relation has a column: a table an earlier version built may lack one. -#}
{% macro has_column(relation, column) %}
  {{ return(column in adapter.get_columns_in_relation(relation) | map(attribute='name') | list) }}
{% endmacro %}


{% macro spelled(columns, spellings) %}
  {%- set found = [] -%}
  {%- for column in columns -%}
    {%- set name = column | lower | replace('\ufeff', '') -%}
    {%- if name in spellings or modules.re.sub('_[0-9]+$', '', name) in spellings -%}
      {%- do found.append(adapter.quote(column)) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if found | length == 0 -%}
    cast(null as varchar)
  {%- elif found | length == 1 -%}
    {{ found[0] }}
  {%- else -%}
    coalesce({{ found | join(', ') }})
  {%- endif -%}
{% endmacro %}


{#- A field as text under whichever of its spellings the files have; blank is null. -#}
{% macro spelled_text(columns, spellings) -%}
  nullif(trim({{ spelled(columns, spellings) }}), '')
{%- endmacro %}


{% macro clean_number(column, type='decimal(38, 10)') %}
  {#- Portal exports quote numbers with thousands separators ("1,101.6777778"). -#}
  {{ try_cast_text("replace(" ~ column ~ ", ',', '')", type) }}
{%- endmacro %}


{% macro yes_no(column) %}
  case upper({{ column }}) when 'Y' then true when 'N' then false end
{%- endmacro %}


{#- An exported text value: blank and the literal NULL are null. -#}
{% macro exported_text(columns, name) %}
  {%- set value = 'trim(' ~ spelled(columns, [name | lower]) ~ ')' -%}
  case when upper({{ value }}) in ('', 'NULL') then null else {{ value }} end
{%- endmacro %}


{#- An exported table's rows with the named columns as cleaned text, and their Kafka coordinates. -#}
{% macro exported_rows(relation, names) %}
  {%- set columns = relation_columns(relation) -%}
    select
        {%- for name in names %}
        {{ exported_text(columns, name) }} as {{ name | lower }},
        {%- endfor %}
        _kafka_timestamp,
        _kafka_partition,
        _kafka_offset

    from {{ relation }}
    where not coalesce(_tombstone, false)
{%- endmacro %}


{#- Keep the latest copy of a row exported more than once (rows without an id are kept, to be rejected). -#}
{% macro latest_copy(id) %}
qualify {{ id }} is null
    or row_number() over (partition by {{ id }} order by kafka_timestamp desc, kafka_partition desc, kafka_offset desc) = 1
{%- endmacro %}
