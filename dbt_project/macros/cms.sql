{#- The CMS .txt files carry a copyright notice as their first data row, under this NPI (as
    spelled in the file): stg_cms__provider_services leaves it out and cms_rejected_rows counts
    it, by this one test. -#}
{% macro cms_copyright_row(npi) -%}
  ({{ npi }} is not distinct from '0000000001')
{%- endmacro %}
