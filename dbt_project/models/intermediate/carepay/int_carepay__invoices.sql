-- An invoice exported without its DATE_CREATED (40% of the real export) takes its treatment's.
{{ with_treatment_date(ref('stg_carepay__invoices')) }}
