"""One base for the errors a user can fix: every exception class the package defines derives
from charrnn.errors.CharrnnError (so the CLI turns it into one line and its exit status), but
for the few that signal a programming error, which must stay tracebacks."""

import importlib
import inspect
import pkgutil

import pytest
from click.testing import CliRunner

import charrnn
from charrnn.cli.app import cli
from charrnn.errors import CharrnnError, UsageError

# not the user's to fix: a broken cell module, or an internal signal caught where it is raised
INTERNAL = {"CellContractError", "EncodingError"}


def defined_exceptions():
    for info in pkgutil.walk_packages(charrnn.__path__, "charrnn."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == info.name):
                yield value


def test_every_user_error_has_the_one_base():
    found = {kind.__name__: kind for kind in defined_exceptions()}
    assert {"ConfigError", "DataError", "CheckpointError", "TrainingError"} <= set(found)
    strays = [name for name, kind in found.items()
              if not issubclass(kind, CharrnnError) and name not in INTERNAL]
    assert not strays, f"exception classes outside charrnn.errors.CharrnnError: {strays}"


@pytest.mark.parametrize("kind,code", [(CharrnnError, 1), (UsageError, 2)])
def test_the_cli_exits_with_the_errors_own_status(monkeypatch, kind, code):
    def fail(*args, **kwargs):
        raise kind("the text is missing; give --data FILE")

    monkeypatch.setattr("charrnn.config.starter_config", fail)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == code
    assert result.output == "charrnn: error: the text is missing; give --data FILE\n"
    assert CharrnnError("x", exit_code=7).exit_code == 7
