"""`credhelper exec`: run a command with credentials served by a loopback
container-credentials endpoint (or, with `--env`, injected as variables).

- `source`: where the endpoint's credentials come from (the daemon over its
  socket, else minted directly), cached in the exec process;
- `endpoint`: the HTTP server on 127.0.0.1 that answers SDKs' container provider;
- `runner`: the child's environment, its start, signal forwarding, exit status.
"""
