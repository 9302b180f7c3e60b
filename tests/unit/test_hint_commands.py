"""The hints in errors name the interpreter this process runs, as a shell in its folder reaches it
(app/command_line.py): `make run`'s `.venv/bin/python`, or `python` where that is the same one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app import command_line


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with its virtual environment's interpreter, this process started from it."""
    interpreter = tmp_path / ".venv" / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(interpreter))
    command_line._interpreter.cache_clear()
    yield tmp_path
    command_line._interpreter.cache_clear()


def test_make_runs_interpreter_is_named_by_its_path_in_the_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(project / "elsewhere"))  # a new shell: no `python` there is this one
    assert command_line.app_command("keys create") == ".venv/bin/python -m app keys create"


def test_an_activated_environment_or_an_image_says_python(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(project / ".venv" / "bin"))
    assert command_line.app_command("load") == "python -m app load"


def test_a_base_interpreter_the_environment_links_to_is_not_taken_for_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.venv/bin/python` links to a base python without the server's packages: on PATH (Debian's
    python-is-python3), `python` would run that one."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).resolve().parent))
    assert command_line.app_command("keys create") == ".venv/bin/python -m app keys create"


def test_an_interpreter_outside_the_folder_is_not_named_by_its_path(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The hint reaches remote clients (a 401 names how keys are made): no path of the server's disk."""
    monkeypatch.setenv("PATH", str(project / "elsewhere"))
    monkeypatch.chdir(tmp_path_factory.mktemp("another"))
    assert command_line.app_command("serve") == "python -m app serve"
