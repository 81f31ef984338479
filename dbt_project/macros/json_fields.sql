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


{#- Every spelling of a field that a JSON object carries, as a list of JSON values in the object's
    order: where one copy is malformed, another may still be read. -#}
{% macro json_fields(object, name) -%}
  list_transform(
      list_filter(json_keys({{ object }}), k -> lower(k) = '{{ name | lower }}'),
      k -> json_extract({{ object }}, '$."' || k || '"')
  )
{%- endmacro %}


{#- Base64 to text; null where it is not base64 of UTF-8. The Redis connector's README prints
    base64 wrapped in double underscores (`__Q3VzdG9tZXI=__`), and a producer that copies it
    sends it so: `_` is no base64 character, so the wrapping is taken off before decoding. -#}
{% macro from_base64_text(expression) -%}
  try(decode(from_base64(regexp_replace({{ expression }}, '^__(.+)__$', '\1'))))
{%- endmacro %}
