"""Export without the daemon: the store, and minting under the profile lock,
all within the export's budget (counted from this process's start)."""

from __future__ import annotations

from collections.abc import Mapping

from credhelper import settings as settings_mod
from credhelper.broker import Broker
from credhelper.deadline import Deadline
from credhelper.model import render
from credhelper.sources.process import check_recursion
from credhelper.store import open_store


def export_text(profile: str, fmt: str, environ: Mapping[str, str]) -> str:
    check_recursion(profile, environ)
    settings = settings_mod.load()
    deadline = Deadline.for_export(settings.export_timeout)
    broker = Broker(settings=settings, store=open_store(settings, deadline), environ=environ)
    return render(broker.get(profile, deadline=deadline), fmt, profile=profile)
