"""The compose commands deploy/README.md shows (no Docker here, so the compose file is read, not run).

`docker compose run --rm SERVICE ARGS...` replaces the service's `command` with ARGS and keeps the
image's ENTRYPOINT (`moodstream`): `run --rm produce /media/clip.mp4 --every 5` ran
`moodstream /media/clip.mp4 --every 5`, "No such command", and the results line "No such option
'--from-start'". Each such line must parse as the moodstream command it means."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUN = re.compile(r"^docker compose -f deploy/docker-compose\.yml run --rm (\S+) ([^#\n]*)", re.M)


def _argv(service: str, args: str) -> list[str]:
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    entrypoint = compose["services"][service].get("entrypoint")
    if entrypoint is None:  # the image's own: every target of deploy/Dockerfile runs `moodstream`
        assert 'ENTRYPOINT ["moodstream"]' in (REPO / "deploy" / "Dockerfile").read_text()
        entrypoint = ["moodstream"]
    assert entrypoint[0] == "moodstream", entrypoint
    return list(entrypoint[1:]) + shlex.split(args)


def _lines() -> list[tuple[str, str]]:
    text = (REPO / "deploy" / "README.md").read_text() + (REPO / "deploy" / "docker-compose.yml").read_text()
    found = RUN.findall(text.replace("#   docker compose", "docker compose"))  # the compose file's comments too
    assert len(found) >= 3, found
    return found


@pytest.mark.parametrize("service,args", _lines())
def test_each_shown_compose_run_is_a_moodstream_command(service, args):
    from moodstream.cli import cli

    argv = _argv(service, args)
    try:
        ctx = cli.make_context("moodstream", list(argv))
        name, command, rest = cli.resolve_command(ctx, list(argv))
        command.make_context(name, rest, parent=ctx)  # parses the options, runs nothing
    except click.UsageError as exc:
        pytest.fail(f"run --rm {service} {args} -> moodstream {' '.join(argv)}: {exc.format_message()}")


def test_each_service_runs_a_moodstream_command_of_its_own():
    from moodstream.cli import cli

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    for service, spec in compose["services"].items():
        if service == "redis":
            continue
        argv = _argv(service, shlex.join(spec.get("command", [])))
        ctx = cli.make_context("moodstream", list(argv))
        name, command, rest = cli.resolve_command(ctx, list(argv))
        command.make_context(name, rest, parent=ctx)
        assert name == {"worker": "worker", "expander": "expander"}.get(service, service), (service, argv)
