from conduitd.cli import entry

entry()
