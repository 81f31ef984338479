{#
  Aggregates that a value a gate let through cannot stop. DuckDB raises `out of range` when a
  sample variance overflows a double (any value from about 1e154 on, or NaN or an infinity),
  which would fail the whole build over one row. Below 1e100 no group, however large, can
  overflow, and the result is stddev_samp's own, bit for bit; a group holding a larger or
  non-finite value gets null, as a group of one row does.
#}
{% macro stddev_samp_or_null(expression) -%}
  case when max(abs({{ expression }})) < 1e100 then
      stddev_samp(case when abs({{ expression }}) < 1e100 then {{ expression }} end)
  end
{%- endmacro %}


{#
  Text to a type, null where it is not one. DuckDB (1.4) reads text into a decimal of more than
  18 digits, a 128-bit integer, about 80 times slower than into one of 18 digits: 5 such
  columns were 200 of the 10M-row CMS build's 220 s of typing. A value that fits 18 digits is
  read narrow, the wide read only takes what does not: the same value either way.
#}
{% macro try_cast_text(expression, type) %}
  {%- set decimal = modules.re.fullmatch('decimal\\((\\d+),(\\d+)\\)', type | replace(' ', '') | lower) -%}
  {%- if decimal and decimal.group(1) | int > 18 and decimal.group(2) | int <= 18 -%}
    coalesce(try_cast({{ expression }} as decimal(18, {{ decimal.group(2) }})), try_cast({{ expression }} as {{ type }}))
  {%- else -%}
    try_cast({{ expression }} as {{ type }})
  {%- endif -%}
{%- endmacro %}
