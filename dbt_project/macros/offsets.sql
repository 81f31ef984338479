{#
  The rows of a staging model an incremental model has not taken in yet: those past the
  highest Kafka offset it holds, partition by partition. The offsets are read when the model
  is compiled and written into the query as literals, so DuckDB prunes the raw Parquet by its
  row-group statistics instead of reading the whole lake to compare offsets with a join.
#}
{% macro offsets_past(relation) %}
  {%- if not execute -%}
    {{ return('true') }}
  {%- endif -%}
  {%- set held = run_query(
      "select kafka_partition, max(kafka_offset) from " ~ relation ~ " group by kafka_partition order by 1"
  ) -%}
  {%- if held.rows | length == 0 -%}
    {{ return('true') }}
  {%- endif -%}
  {%- set past = [] -%}
  {%- set partitions = [] -%}
  {%- for partition, through in held.rows -%}
    {%- do past.append('(kafka_partition = ' ~ partition ~ ' and kafka_offset > ' ~ through ~ ')') -%}
    {%- do partitions.append(partition | string) -%}
  {%- endfor -%}
  {{ return('(' ~ past | join(' or ') ~ ' or kafka_partition not in (' ~ partitions | join(', ') ~ '))') }}
{% endmacro %}
