-- Built from the table conduitd loaded; the row count conduitd passed in --vars rides along.
{{ config(materialized='table', tags=['orders']) }}
select status, count(*) as orders, sum(amount) as amount,
       {{ var('conduitd')['rows_written'] }} as rows_written_by_run,
       '{{ var('conduitd')['tables'][0] }}' as loaded_table
from {{ var('conduitd')['tables'][0] }}
group by status
