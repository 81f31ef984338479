{#
  The rows of a staging model an incremental model has not taken in yet: those past the
  highest Kafka offset it holds, partition by partition of each generation of the topic. The offsets are read when the model
  is compiled and written into the query as literals, so DuckDB prunes the raw Parquet by its
  row-group statistics instead of reading the whole lake to compare offsets with a join.
#}
{% macro offsets_past(relation) %}
  {%- if not execute -%}
    {{ return('true') }}
  {%- endif -%}
  {#- A table built before topic generations has no kafka_generation yet: all of it is generation 0. -#}
  {%- set has_generation = 'kafka_generation' in adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
  {%- set held = run_query(
      "select " ~ ("coalesce(kafka_generation, 0)" if has_generation else "0") ~ ", kafka_partition, max(kafka_offset) from "
      ~ relation ~ " group by all order by 1, 2"
  ) -%}
  {%- if held.rows | length == 0 -%}
    {{ return('true') }}
  {%- endif -%}
  {%- set past = [] -%}
  {%- set partitions = [] -%}
  {%- for generation, partition, through in held.rows -%}
    {%- do past.append('(kafka_generation = ' ~ generation ~ ' and kafka_partition = ' ~ partition
                       ~ ' and kafka_offset > ' ~ through ~ ')') -%}
    {%- do partitions.append('(kafka_generation = ' ~ generation ~ ' and kafka_partition = ' ~ partition ~ ')') -%}
  {%- endfor -%}
  {{ return('(' ~ past | join(' or ') ~ ' or not (' ~ partitions | join(' or ') ~ '))') }}
{% endmacro %}
