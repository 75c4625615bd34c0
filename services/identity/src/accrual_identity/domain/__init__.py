"""The pure core of identity: normalisation, attribute rules and resolution precedence.

Nothing here imports protobuf, SQLAlchemy or Dramatiq, so the rules that decide who a
person is can be tested (and reasoned about) without a database or a server.
"""
