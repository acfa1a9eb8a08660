"""Dagster: one asset per pipeline's destination table, materialized by a bounded conduitd run,
with an asset check per quality rule."""

from conduitd_orchestrators.dagster.assets import check_name, conduitd_assets, table_asset_key

__all__ = ["check_name", "conduitd_assets", "table_asset_key"]
