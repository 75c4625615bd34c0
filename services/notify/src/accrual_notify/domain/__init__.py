"""The pure core of notify: no protobuf, SQLAlchemy, Dramatiq or network I/O.

Everything here is arithmetic on values (envelopes, signatures, retry schedules, URLs), so it
is unit-tested without a database, a broker or a receiver.
"""
