"""The data layer: the only place that builds queries.

One module per aggregate, keyword-only functions taking a session; services own the
unit of work (add, flush, commit) and call these for every read and conditional write.

- ``errors``: NotFound, Conflict, Invalid, InvalidReference
- ``rows``: any row by key, pages, inserts and updates of whole rows
- ``registry``: the read-mostly rows a decision reads, cached per process
- ``guests``: guests, credentials, PIN runs, phone keys, entitlements, wearables
- ``devices``: venues, zones (presence, occupancy), devices, broker logins
- ``events``: the journey, telemetry, dead letters, the audit trail
- ``staff``: staff users, token versions, log-in throttling
- ``money``: accounts, postings, transactions, idempotency keys, daily spend
- ``privacy``: preferences, consents, a guest's copy, erasure, retention
- ``runs``: automation runs and the queue of commands for offline appliances

The layer imports hub.models and hub.db only: never decisions, services or the API.
"""
