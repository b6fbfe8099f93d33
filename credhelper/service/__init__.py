"""`credhelper service install|uninstall|status`: the daemon as a systemd user
service (Linux) or a launchd agent (macOS). Library only; the click commands
are in credhelper/cli/service.py.

- common.py: names, target paths, `Command`/`Plan`, the default runner;
- render.py: the templates, the environment the service gets, quoting;
- systemd.py / launchd.py: each manager's commands (and Homebrew's service);
- manage.py: install/uninstall/status, refusing to start a second daemon.

Every external command goes through a `Runner` (default `run_command`, i.e.
subprocess.run) so that tests can see and fake them. `dry_run` renders and
plans but writes nothing and runs nothing.
"""

from credhelper.service.common import (
    LABEL,
    LAUNCHD,
    SYSTEMD,
    TEMPLATES,
    UNIT,
    Command,
    Plan,
    Runner,
    kind_for,
    log_path,
    run_command,
    target_path,
)
from credhelper.service.manage import (
    Status,
    install,
    plan_install,
    plan_status,
    plan_uninstall,
    status,
    uninstall,
    write_atomically,
)
from credhelper.service.render import (
    COPIED,
    NOT_COPIED,
    STANDARD_PATH,
    helper_dirs,
    launcher,
    render,
    service_environment,
    template,
)

__all__ = [
    "COPIED", "LABEL", "LAUNCHD", "NOT_COPIED", "STANDARD_PATH", "SYSTEMD", "TEMPLATES", "UNIT",
    "Command", "Plan", "Runner", "Status", "helper_dirs", "install", "kind_for", "launcher",
    "log_path", "plan_install", "plan_status", "plan_uninstall", "render", "run_command",
    "service_environment", "status", "target_path", "template", "uninstall", "write_atomically",
]
