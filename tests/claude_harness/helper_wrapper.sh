#!/bin/sh
# Logging wrapper around one credential-helper command (TAG and D are set in
# the lines the harness puts above this template). Claude Code runs this file;
# it runs the original command string the way Claude Code would (/bin/sh -c),
# records the start, end, exit code, environment, stdout and stderr, and
# passes stdout, stderr and the exit code through.
me=$$
printf 'START %s tag=%s pid=%s ppid=%s cwd=%s stdin=%s parent=[%s]\n' \
  "$(date +%s.%N)" "$TAG" "$me" "$PPID" "$(pwd)" "$(readlink /proc/$me/fd/0 2>/dev/null || echo '?')" \
  "$(tr '\0' ' ' </proc/$PPID/cmdline 2>/dev/null | cut -c1-200)" >>"$D/invocations.log"
env | sort >"$D/$TAG.$me.env"
# stdout goes to a file first: the fake Bedrock reads the credentials from it
/bin/sh -c "$(cat "$D/$TAG.cmd")" >"$D/$TAG.$me.out.part" 2>"$D/$TAG.$me.err" &
child=$!
echo "$me $child" >"$D/$TAG.$me.pids"
trap 'kill $child 2>/dev/null; printf "KILLED %s tag=%s pid=%s\n" "$(date +%s.%N)" "$TAG" "$me" >>"$D/invocations.log"; exit 143' TERM INT HUP
wait $child
rc=$?
mv "$D/$TAG.$me.out.part" "$D/$TAG.$me.out"
printf 'END %s tag=%s pid=%s rc=%s\n' "$(date +%s.%N)" "$TAG" "$me" "$rc" >>"$D/invocations.log"
cat "$D/$TAG.$me.out"
cat "$D/$TAG.$me.err" >&2
exit $rc
