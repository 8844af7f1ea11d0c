"""The CLI fails clearly: one line on stderr, the documented exit code, no traceback, no hang."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import _build_parser
from server.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    # A hang is the bug being tested: the timeout turns it into a failure, not a stuck suite.
    return subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_cli("serve", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert_one_line(proc, 2, "config file not found", "nope.yaml")


def test_invalid_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: [1, 2\n")
    proc = run_cli("serve", "--config", str(bad), cwd=tmp_path)
    assert_one_line(proc, 2, "invalid config file", "bad.yaml", "line")


def test_bad_env_value_names_key_and_value(tmp_path: Path) -> None:
    proc = run_cli("serve", cwd=tmp_path, env={"LIVECOACH_SERVER__PORT": "notanumber"})
    assert_one_line(proc, 2, "server.port", "'notanumber'", "LIVECOACH_SERVER__PORT")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        # Default log level: the dev-mode warning must not come before the error (one line).
        proc = run_cli("serve", "--port", str(port), cwd=tmp_path)
    assert_one_line(proc, 1, "cannot listen", str(port), "in use")


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli("serve", cwd=tmp_path, env={"LIVECOACH_SERVER__DATA_DIR": str(blocker / "data")})
    assert_one_line(proc, 1, "data folder", "not usable")


def test_production_refuses_the_published_secret(tmp_path: Path) -> None:
    proc = run_cli("serve", cwd=tmp_path, env={"LIVECOACH_SERVER__DEV_TOKENS": "false"})
    assert_one_line(proc, 2, "server.secret", "32")


def test_dev_tokens_refuse_a_public_address(tmp_path: Path) -> None:
    proc = run_cli("serve", "--host", "0.0.0.0", "--log-level", "error", cwd=tmp_path)
    assert_one_line(proc, 2, "0.0.0.0", "--allow-remote-dev")


def test_token_rejects_a_non_finite_ttl(tmp_path: Path) -> None:
    proc = run_cli("token", "--room", "r", "--role", "qa", "--user", "u", "--ttl", "nan", cwd=tmp_path)
    assert_one_line(proc, 2, "--ttl")


def test_every_option_has_help(tmp_path: Path) -> None:
    parser = _build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        if name == "qa":  # its own parser (livecoach qa --help)
            continue
        for action in sub._actions:
            assert action.help, f"livecoach {name} {'/'.join(action.option_strings) or action.dest} has no help"
    proc = run_cli("serve", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--port" in proc.stdout and "TCP port" in proc.stdout


def test_init_writes_an_editable_config_that_serve_picks_up(tmp_path: Path) -> None:
    proc = run_cli("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "livecoach.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / "scenarios").glob("*.yaml"))
    again = run_cli("init", cwd=tmp_path)
    assert_one_line(again, 2, "already exists", "--force")
    # load_settings in that folder uses the copy: scenarios from ./scenarios, data under ./data
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        settings = load_settings()
    finally:
        os.chdir(here)
    assert Path(settings.config_file) == tmp_path / "livecoach.yaml"
    assert Path(settings.coach.scenarios_dir) == tmp_path / "scenarios"
    assert Path(settings.server.data_dir) == tmp_path / "data"


def test_paths_resolve_to_packaged_data_and_the_working_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIVECOACH_CONFIG", raising=False)
    settings = load_settings()
    assert (Path(settings.server.static_dir) / "practice.html").is_file()
    assert list(Path(settings.coach.scenarios_dir).glob("*.yaml"))
    assert Path(settings.server.data_dir) == tmp_path / "data"


def test_load_settings_leaves_the_environment_alone(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 9123\n")
    before = dict(os.environ)
    assert load_settings(config).server.port == 9123
    assert dict(os.environ) == before
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.yaml")
    assert dict(os.environ) == before


def test_workers_need_redis(tmp_path: Path) -> None:
    proc = run_cli("serve", "--workers", "2", "--log-level", "error", cwd=tmp_path, env={"REDIS_URL": ""})
    assert_one_line(proc, 2, "--workers 2", "Redis", "REDIS_URL")


def test_workers_must_be_positive(tmp_path: Path) -> None:
    proc = run_cli("serve", "--workers", "0", cwd=tmp_path)
    assert_one_line(proc, 2, "--workers 0")
