"""By hand, as root, from tests/:

    python -m claude_harness --helper-cmd 'credhelper export --profile dev' [--expect-akid ASIA...]

prints the run's report (last line PASS/FAIL) and exits 0 only on PASS.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import claude_harness


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m claude_harness", description=__doc__.split("\n\n")[0])
    p.add_argument("--helper-cmd", help="awsCredentialExport")
    p.add_argument("--refresh-cmd", help="awsAuthRefresh")
    p.add_argument("--settings", help="use this settings.json (helper commands wrapped for logging)")
    p.add_argument("--command", help="run this instead of `claude -p` ({claude}, {prompt}, {workdir})")
    p.add_argument("--expect-akid")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--netns-setup", help="bash run inside the namespace first")
    p.add_argument("--pass-env", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args()
    problem = claude_harness.problem()
    if problem:
        print(f"claude_harness: {problem}", file=sys.stderr)
        return 2
    run = claude_harness.run(
        args.helper_cmd, refresh_cmd=args.refresh_cmd, settings=args.settings,
        command=shlex.split(args.command) if args.command else None, expect_akid=args.expect_akid,
        fail_first=args.fail_first, netns_setup=args.netns_setup,
        pass_env=dict(kv.split("=", 1) for kv in args.pass_env),
    )
    print(run.report())
    return run.rc


if __name__ == "__main__":
    sys.exit(main())
