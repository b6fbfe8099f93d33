"""The serving policy (product.md "Interfaces: Refresh window"), stdlib only.

The broker and the lean export path (credhelper/lean/) both decide with these
functions whether stored credentials may be served, so the two cannot drift.
"""

from __future__ import annotations

#: Claude Code keeps credentials with <= 6 min left for an hour; keep a minute more
SERVE_FLOOR = 7 * 60
#: credentials that could be served for less than this are refused, not looped on
MIN_SERVING = 30


def effective_window(lifetime: float, configured: float) -> float:
    """Seconds before expiry at which credentials of this lifetime stop being served."""
    window = configured if configured <= lifetime - MIN_SERVING else lifetime / 2
    return max(float(SERVE_FLOOR), float(window))
