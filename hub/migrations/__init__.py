"""Alembic's scripts for the hub's schema: env.py and one module per revision in versions/.

Run through hub.migrate (``hub db upgrade``), never alembic's own command line: the
configuration is built in code and the connection handed in, so nothing here reads an
alembic.ini or a URL.
"""
