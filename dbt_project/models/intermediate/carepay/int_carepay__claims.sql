-- A claim exported without its DATE_CREATED takes its treatment's.
{{ with_treatment_date(ref('stg_carepay__claims')) }}
