"""The deployment recipes of docs/howto/deploy.md are real: they parse, and what they run exists.

Every ``manage.py`` command line in them goes through that command's own option
parser (a misspelled or removed option fails here, not in someone's cluster);
the grace periods outlast the worker's shutdown timeout; the memory limits sit
above ``--max-memory``; systemd's verifier accepts the units.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "howto" / "deploy"
SHUTDOWN_DEFAULT = 30.0  # DURABLE_JOBS["SHUTDOWN_TIMEOUT"]


def _compose() -> dict:
    return yaml.safe_load((RECIPES / "docker-compose.yml").read_text())


def _kubernetes_worker() -> dict:
    (deployment,) = yaml.safe_load_all((RECIPES / "kubernetes.yml").read_text())
    return deployment["spec"]["template"]["spec"]


def _systemd_exec(unit: str) -> list[str]:
    (line,) = [x for x in (RECIPES / unit).read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _procfile() -> dict[str, list[str]]:
    lines = (RECIPES / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, command in (x.split(": ", 1) for x in lines)}


def _manage_py_lines() -> list[list[str]]:
    """Every ``manage.py`` command line of every recipe: the arguments after manage.py."""
    argvs = [
        service["command"] for service in _compose()["services"].values() if "command" in service
    ]
    argvs += [c["command"] for c in _kubernetes_worker()["containers"]]
    for container in _kubernetes_worker()["containers"]:
        argvs += [
            container[probe]["exec"]["command"] for probe in ("readinessProbe", "livenessProbe")
        ]
    argvs += [_compose()["services"]["worker"]["healthcheck"]["test"][1:]]  # after "CMD"
    argvs += [_systemd_exec("myproject-worker@.service")]
    argvs += list(_procfile().values())
    return [argv[argv.index("manage.py") + 1 :] for argv in argvs if "manage.py" in argv]


def _option(argv: list[str], name: str, default: float | None = None) -> float | None:
    return float(argv[argv.index(name) + 1]) if name in argv else default


def test_every_manage_py_line_is_accepted_by_its_commands_parser():
    lines = _manage_py_lines()
    assert len(lines) >= 8  # runworker, jobs health, migrate in several recipes
    commands = get_commands()
    for argv in lines:
        name, *args = argv
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(args)  # CommandError on an unknown option or a bad value


def test_grace_periods_outlast_the_shutdown_timeout():
    worker = _compose()["services"]["worker"]
    grace = float(worker["stop_grace_period"].removesuffix("s"))
    assert grace > _option(worker["command"], "--shutdown-timeout", SHUTDOWN_DEFAULT)
    pod = _kubernetes_worker()
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > _option(
        container["command"], "--shutdown-timeout", SHUTDOWN_DEFAULT
    )
    # Under --processes the supervisor kills a child still alive 10 s past the timeout.
    unit = (RECIPES / "myproject-worker@.service").read_text()
    stop = float(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    assert stop > _option(_systemd_exec("myproject-worker@.service"), "--shutdown-timeout") + 10
    # Heroku: 30 s from SIGTERM to SIGKILL.
    assert _option(_procfile()["worker"], "--shutdown-timeout") < 30


def test_the_memory_limit_sits_above_max_memory():
    (container,) = _kubernetes_worker()["containers"]
    limit_mib = float(container["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert limit_mib > _option(container["command"], "--max-memory")


def test_the_compose_file_runs_migrations_before_web_and_workers():
    services = _compose()["services"]
    assert set(services) == {"db", "migrate", "web", "worker"}
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert isinstance(services["worker"]["command"], list)  # exec form: it gets SIGTERM


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_accepts_the_units(tmp_path):
    # The units name /srv/myproject/.venv/bin/...: point them at executables that exist.
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for program in ("python", "gunicorn"):
        (bin_dir / program).symlink_to(shutil.which("true"))
    units = []
    for unit in ("myproject-web.service", "myproject-worker@.service"):
        text = (RECIPES / unit).read_text().replace("/srv/myproject/.venv/bin", str(bin_dir))
        target = tmp_path / unit.replace("@.", "@1.")
        target.write_text(text)
        units.append(str(target))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
