{#
  What staging reads of a raw topic: only the rows its quality gates have passed. Each gate
  keeps, per partition, the offset up to which the topic's rows have been validated
  (`LAKEHOUSE_HOME/gates/<topic>/<suite>.json`, see expectations/gate.py). Rows drained after
  the gates last ran wait for the next run of the gates, whoever starts the build, so a row
  never reaches a mart unvalidated. The marks are read when the model is compiled and written
  in as literals, like `offsets_past`. Below the marks, the rows a gate set aside
  (`LAKEHOUSE_HOME/set_aside/<topic>/*.parquet`, see ingestion/set_aside.py) are left out.
#}

{#- The raw table `table` (a source of `raw`) as a subquery of the rows its gates passed, each with
    its `_generation` (0 until the topic was deleted and created again: the first generation's
    files have no such column). -#}
{% macro raw_source(table) %}
  {%- set relation = with_generation(raw_or_empty(source('raw', table))) -%}
  {{ return("(select * from " ~ relation ~ " as gated where " ~ passed_gates(table) ~ not_set_aside(table) ~ ")") }}
{% endmacro %}


{% macro with_generation(relation) %}
  {%- if execute and '_generation' in relation_columns(relation) -%}
    {{ return("(select * replace (coalesce(_generation, 0)::integer as _generation) from " ~ relation ~ ")") }}
  {%- endif -%}
  {{ return("(select *, 0::integer as _generation from " ~ relation ~ ")") }}
{% endmacro %}


{#- `and` an anti-join on the set-aside coordinates of the table's topic, or nothing while none is set aside. -#}
{% macro not_set_aside(table) %}
  {%- set gates = var('raw_gates').get(table) -%}
  {%- if not execute or not gates -%}
    {{ return('') }}
  {%- endif -%}
  {%- set files = env_var('LAKEHOUSE_HOME', '../data_lake') ~ '/set_aside/' ~ gates.topic ~ '/*.parquet' -%}
  {%- if run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] == 0 -%}
    {{ return('') }}
  {%- endif -%}
  {{ return(" and not exists (select 1 from read_parquet('" ~ files ~ "', union_by_name = true) as set_aside"
            ~ " where set_aside._generation = gated._generation and set_aside._partition = gated._partition"
            ~ " and set_aside._offset = gated._offset)") }}
{% endmacro %}


{#- A filter on _generation, _partition and _offset: below every gate's mark (keyed `3`, or `1:3`
    for partition 3 of generation 1); `true` for a topic without gates. -#}
{% macro passed_gates(table) %}
  {%- set gates = var('raw_gates').get(table) -%}
  {%- if not execute or not gates -%}
    {{ return('true') }}
  {%- endif -%}
  {%- set marks = [] -%}
  {%- for suite in gates.suites -%}
    {%- set path = env_var('LAKEHOUSE_HOME', '../data_lake') ~ '/gates/' ~ gates.topic ~ '/' ~ suite ~ '.json' -%}
    {%- if run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0] == 0 -%}
      {{ return('false') }}
    {%- endif -%}
    {%- do marks.append(fromjson(run_query("select content from read_text('" ~ path ~ "')").columns[0].values()[0])) -%}
  {%- endfor -%}
  {%- set below = [] -%}
  {%- for partition, until in marks[0].items() -%}
    {%- set ns = namespace(until=until) -%}
    {%- for mark in marks[1:] -%}
      {%- set ns.until = [ns.until, mark.get(partition, 0)] | min -%}
    {%- endfor -%}
    {%- set key = (partition | string).split(':') -%}
    {%- set generation = key[0] if key | length == 2 else '0' -%}
    {%- do below.append('(_generation = ' ~ generation ~ ' and _partition = ' ~ key[-1] ~ ' and _offset < ' ~ ns.until ~ ')') -%}
  {%- endfor -%}
  {{ return('(' ~ (below | join(' or ') or 'false') ~ ')') }}
{% endmacro %}


{#- The raw table, or an empty one with the drain's metadata columns while no file of it exists,
    so a stream whose other topics have data still builds. -#}
{% macro raw_or_empty(relation) %}
  {%- if execute -%}
    {%- set files = modules.re.search("read_parquet\\('([^']+)'", relation | string) -%}
    {%- if files and run_query("select count(*) from glob('" ~ files.group(1) ~ "')").columns[0].values()[0] == 0 -%}
      {{ return("(select null::varchar as _topic, null::integer as _partition, null::bigint as _offset, "
                ~ "null::timestamptz as _timestamp, null::varchar as _key, null::boolean as _tombstone, "
                ~ "null::integer as _generation where false)") }}
    {%- endif -%}
  {%- endif -%}
  {{ return(relation) }}
{% endmacro %}
