"""Database tables as sources, read by polling: a keyset cursor `(cursor column, primary key)`
that never splits a group of equal cursor values, bounded on every poll so a transaction that
commits late is still read (see `watermark`). PostgreSQL now; MySQL/MariaDB to follow on the same
parts (`catalog` types, `cursor` positions and SQL, `decode` of the bulk text into Arrow)."""
