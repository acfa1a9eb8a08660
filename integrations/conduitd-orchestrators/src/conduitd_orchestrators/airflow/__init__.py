"""Airflow: `ConduitdRunOperator` runs a bounded conduitd run and returns its summary as XCom."""

from conduitd_orchestrators.airflow.operator import ConduitdRunOperator

__all__ = ["ConduitdRunOperator"]
