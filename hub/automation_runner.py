"""Where :class:`Occurrence` used to live: kept for ``hub.ingest`` until its import moves.

Everything else is in :mod:`hub.automations` (the runner in :mod:`hub.automations.runner`).
"""

from __future__ import annotations

from hub.automations.occurrence import Occurrence

__all__ = ["Occurrence"]
