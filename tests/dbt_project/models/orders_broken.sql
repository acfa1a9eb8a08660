-- Fails on purpose (a column the loaded table does not have): selected only by the failure test.
{{ config(materialized='table', tags=['broken']) }}
select no_such_column from {{ target.schema }}.orders
