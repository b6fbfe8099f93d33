"""The `credhelper` console script. Stdlib only until it knows it needs more.

`export` is the hot path (Claude Code runs it for every credential resolve):
when the daemon answers, nothing heavier than the socket is imported.
Everything else, and every fallback, goes to the click CLI.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from credhelper.cli import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
