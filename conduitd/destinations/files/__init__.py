"""Files as a destination: CSV, JSON (an array per file), JSON lines or Parquet, in a local
directory or under an S3 prefix (pyarrow.fs), effectively-once.

Each table is a folder of immutable parts; each commit writes its rows as new parts (and its
rejected rows as DLQ parts in `_dlq/`), then publishes them with the checkpoints by replacing
one small state file (`state`), which lists every published part:

- locally, parts are written under temporary names (`.part-....tmp`, which readers such as
  pyarrow datasets skip) and fsynced; the state file is written beside, fsynced and renamed over
  the old one (the commit point); then the parts are renamed to their names. A crash before the
  state's rename leaves only temporaries, removed at the next start; a crash after it leaves
  renames that the next start finishes. So the folder never shows a part the state does not
  name, except in a window after the state's rename where it shows fewer;
- on S3 (no rename) parts are PUT under their final names, then the state object (a PUT is
  atomic): until the next start, an object of a commit that never published may be listed
  beside the published ones; the next start deletes it. Read through the state object (or after
  a start) to see exactly the published rows.

Either way a part is never half written, and a row is in exactly one published part. Schema
evolution adds columns to later parts (earlier ones read as null there); tables are append-only
(no upsert, no deletes). `path: out.csv` (a single file) keeps the parts in `.out.csv.conduitd/`
beside it and rewrites `out.csv` from them after each commit (temporary file and rename).
"""

from conduitd.destinations.files.destination import CAPABILITIES, FileDestination
from conduitd.destinations.files.settings import FileDestinationConfig

__all__ = ["CAPABILITIES", "FileDestination", "FileDestinationConfig"]
