"""The MySQL/MariaDB destination as the registry sees it (`registry._BUILTINS`). Importing this
module imports no driver; the factory imports the destination (and asyncmy) when called."""

from __future__ import annotations

import importlib

from conduitd.destinations.base import Destination
from conduitd.destinations.mysql.settings import MysqlDestinationConfig
from conduitd.registry import Connector


def _mysql(config: MysqlDestinationConfig) -> Destination:
    from conduitd.destinations.mysql.destination import MysqlDestination

    return MysqlDestination(config)


def _capabilities() -> object:
    return getattr(importlib.import_module("conduitd.destinations.mysql"), "CAPABILITIES", None)


MYSQL = Connector(type="mysql", kind="destination", config_model=MysqlDestinationConfig, factory=_mysql,
                  capabilities=_capabilities, requires=("asyncmy",), extra="mysql",
                  description="a MySQL or MariaDB database (asyncmy; InnoDB)")
