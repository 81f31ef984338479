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
