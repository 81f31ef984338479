{#
  A field of a JSON object whatever the case of its name: change feeds spell the same field
  `score`, `Score` or `zSetEntries`, `zsetEntries`. The first matching key wins (the spellings a
  record carries twice are redundant).
#}

{% macro json_field(object, name) -%}
  json_extract({{ object }}, '$."' || list_filter(json_keys({{ object }}), k -> lower(k) = '{{ name | lower }}')[1] || '"')
{%- endmacro %}


{% macro json_text(object, name) -%}
  json_extract_string({{ object }}, '$."' || list_filter(json_keys({{ object }}), k -> lower(k) = '{{ name | lower }}')[1] || '"')
{%- endmacro %}


{#- Base64 to text; null where it is not base64 of UTF-8. -#}
{% macro from_base64_text(expression) -%}
  try(decode(from_base64({{ expression }})))
{%- endmacro %}
