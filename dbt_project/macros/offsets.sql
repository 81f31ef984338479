{#
  The records of `relation` (a model with Kafka coordinates) that the incremental model `holder`
  has not taken in yet: those past the highest offset it holds, partition by partition of each
  generation of the topic, and every record of a partition or generation it holds nothing of.
  `coordinates` names the relation's generation, partition and offset columns (the raw table
  spells them `_generation`, `_kafka_partition`, `_kafka_offset`); the holder's are staging's.
  With no holder (none: not built yet), every record.

  The offsets are read when the query is compiled and written into it as literals, one scan a
  partition, so DuckDB prunes the raw Parquet by its row-group statistics: a condition that ORs
  the partitions together is not pushed below a staging view's typing, and typed every record of
  the lake (2.2 s of 10M CMS records for each test, where these scans take a tenth of that).
  What the holder holds nothing of is said as ranges (`> 2`, or `in` the gaps below it), never
  as `not in`: statistics prune a range, and a `not in` read every file of the lake (0.25 s a
  scan of 10M records, against 0.07 s).
#}
{% macro rows_past(relation, holder, coordinates=('kafka_generation', 'kafka_partition', 'kafka_offset')) %}
  {%- set everything = '(select * from ' ~ relation ~ ')' -%}
  {%- if not execute or holder is none -%}
    {{ return(everything) }}
  {%- endif -%}
  {%- set generation_column, partition_column, offset_column = coordinates -%}
  {#- A table built before topic generations has no kafka_generation yet: all of it is generation 0. -#}
  {%- set has_generation = has_column(holder, 'kafka_generation') -%}
  {%- set held = run_query(
      "select " ~ ("coalesce(kafka_generation, 0)" if has_generation else "0") ~ ", kafka_partition, max(kafka_offset) from "
      ~ holder ~ " group by all order by 1, 2"
  ) -%}
  {%- if held.rows | length == 0 -%}
    {{ return(everything) }}
  {%- endif -%}
  {%- set scans = [] -%}
  {%- set partitions = {} -%}
  {%- for generation, partition, through in held.rows -%}
    {%- do scans.append(generation_column ~ ' = ' ~ generation ~ ' and ' ~ partition_column ~ ' = ' ~ partition
                        ~ ' and ' ~ offset_column ~ ' > ' ~ through) -%}
    {#- agate reads the numbers as decimals -#}
    {%- do partitions.setdefault(generation | int, []).append(partition | int) -%}
  {%- endfor -%}
  {%- for generation, held_partitions in partitions.items() -%}
    {%- do scans.append(generation_column ~ ' = ' ~ generation ~ ' and ' ~ not_held(partition_column, held_partitions)) -%}
  {%- endfor -%}
  {%- do scans.append(not_held(generation_column, partitions.keys() | list)) -%}
  {%- set selects = [] -%}
  {%- for scan in scans -%}
    {%- do selects.append('select * from ' ~ relation ~ ' where ' ~ scan) -%}
  {%- endfor -%}
  {{ return('(' ~ selects | join(' union all ') ~ ')') }}
{% endmacro %}


{#- `column` is none of the numbers `held` (whole numbers from 0: partitions, generations). -#}
{% macro not_held(column, held) %}
  {%- set highest = held | max -%}
  {%- set gaps = [] -%}
  {%- for number in range(highest) if number not in held -%}
    {%- do gaps.append(number | string) -%}
  {%- endfor -%}
  {%- set above = column ~ ' > ' ~ highest -%}
  {{ return('(' ~ above ~ ' or ' ~ column ~ ' in (' ~ gaps | join(', ') ~ '))' if gaps else above) }}
{% endmacro %}


{#
  Where a test reads its model from (dbt's own macro, overridden). A test of a staging view
  reads the whole raw layer at every build, though a stored record never changes. A test whose
  `meta.new_rows_of` names the incremental model that takes the view's records in checks only
  those that model does not hold yet (`rows_past`): in a `dbt build` the view's tests run before
  the model, so these are the records this build adds, and every record the model holds passed
  the same tests before it went in. A full refresh, or a model not built yet, tests every record.

  A `unique` test so scoped reads every row whose key a record it would check carries: a key
  the build brings can collide with a row held before it, which a test of the new records alone
  would not see. (An incremental model's own tests name the holder downstream, the `__examined`
  table of the model that reads it: in a build they run before that model moves it.)
#}
{% macro get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- set new_rows_of = (config.get('meta') or {}).get('new_rows_of') -%}
  {%- set source = relation -%}
  {%- if new_rows_of and execute and not flags.FULL_REFRESH -%}
    {%- set holder = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=new_rows_of) -%}
    {%- if holder is not none and model.test_metadata.name == 'unique' -%}
      {%- set key = model.test_metadata.kwargs.column_name -%}
      {%- set source = '(select * from ' ~ relation ~ ' where ' ~ key ~ ' in (select ' ~ key ~ ' from '
                       ~ rows_past(relation, holder) ~ '))' -%}
    {%- elif holder is not none -%}
      {%- set source = rows_past(relation, holder) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if where -%}
    {%- do return('(select * from ' ~ source ~ ' as tested where ' ~ where ~ ') dbt_subquery') -%}
  {%- elif source is not sameas relation -%}
    {%- do return(source ~ ' dbt_subquery') -%}
  {%- else -%}
    {%- do return(relation) -%}
  {%- endif -%}
{%- endmacro %}


{#
  How far an incremental model has read a relation with Kafka coordinates, where its own rows
  cannot say: the highest offset of each partition of each generation it examined, in
  `<model>__examined`, rewritten by the model's post-hook (`record_examined`) inside its
  transaction, so a build that fails leaves the rows and the mark as they were. For a model whose
  rows are few of the records it reads (the rejected ones), or aggregates of them.
#}
{% macro examined_relation() %}
  {{ return(this.incorporate(path={'identifier': this.identifier ~ '__examined'})) }}
{% endmacro %}


{#- The raw table's names of the coordinates (staging's are `kafka_generation`, ...). -#}
{% macro raw_coordinates() %}
  {{ return(('_generation', '_kafka_partition', '_kafka_offset')) }}
{% endmacro %}


{#- The model's mark as it stands, or none: before it examined anything, and in a full refresh. -#}
{% macro examined_mark() %}
  {%- set examined = examined_relation() -%}
  {%- if not execute or flags.FULL_REFRESH -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(adapter.get_relation(database=examined.database, schema=examined.schema, identifier=examined.identifier)) }}
{% endmacro %}


{#- The records of `relation` past those the model has examined; all of them before it examined any. -#}
{% macro examined_past(relation, coordinates=('kafka_generation', 'kafka_partition', 'kafka_offset')) %}
  {{ return(rows_past(relation, examined_mark(), coordinates)) }}
{% endmacro %}


{#-
  The mark moves by what this build examined (the same records `examined_past` gave the model:
  the post-hook runs before the mark changes), not by a scan of the whole relation: the raw
  table's 10M records took 0.17 s a build to say what was already known. A full refresh scans
  the whole relation, as it examined all of it.
-#}
{% macro record_examined(relation, coordinates=('kafka_generation', 'kafka_partition', 'kafka_offset')) %}
  {%- set generation, partition, offset = coordinates -%}
  {%- set held = examined_mark() -%}
  create or replace table {{ examined_relation() }} as
  select coalesce({{ generation }}, 0) as kafka_generation, {{ partition }} as kafka_partition, max({{ offset }}) as kafka_offset
  from (
    select {{ generation }}, {{ partition }}, {{ offset }} from {{ rows_past(relation, held, coordinates) }} as new_records
    {%- if held is not none %}
    union all
    select kafka_generation, kafka_partition, kafka_offset from {{ held }}
    {%- endif %}
  ) as examined
  group by all
{% endmacro %}
