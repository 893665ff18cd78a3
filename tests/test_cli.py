"""Commands live in common/cli/ and every command the docs show exists there, subcommand included."""

import importlib
import re

import pytest

from tests.nnictl_utils import ROOT

# A `-m` command with its first argument, as written in the README, config comments and docstrings.
COMMAND = re.compile(r"python3? -m (common(?:\.\w+)+)(?: ([a-z][\w|-]*))?")
DOCUMENTED = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("experiments/**/*.yml"),
              *ROOT.glob("common/**/*.py"), *ROOT.glob("trials/*.py"), *ROOT.glob("tests/*.py")]
LIBRARY = sorted(p for p in (ROOT / "common").glob("*.py"))


def documented_commands() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in DOCUMENTED:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for module, sub in COMMAND.findall(line):
                found.setdefault((module, sub), []).append(f"{path.relative_to(ROOT)}:{n}")
    return found


COMMANDS = documented_commands()


def test_the_docs_show_every_command():
    assert {module for module, _ in COMMANDS} >= {f"common.cli.{name}" for name in ("bench", "report", "nas", "cache")}


@pytest.mark.parametrize("module, sub", sorted(COMMANDS), ids=lambda v: v or "-")
def test_documented_command_exists(module, sub, capsys):
    where = ", ".join(COMMANDS[module, sub])
    assert module.startswith("common.cli."), f"{module} is not a command module (common/cli/): {where}"
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"no module {module}: {where}"
    assert 'if __name__ == "__main__":' in path.read_text(), f"{module} cannot run as `-m`: {where}"
    with pytest.raises(SystemExit) as end:
        importlib.import_module(module).main(["--help"])
    assert end.value.code == 0
    usage = capsys.readouterr().out
    if "{" not in usage:  # no subcommands: the first word is a positional argument (an experiment id)
        return
    for word in filter(None, sub.split("|")):  # subcommands; placeholders (<id>) and flags are not captured
        assert re.search(rf"[{{,]{re.escape(word)}[,}}]", usage), f"{module} has no subcommand {word!r}: {where}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_library_modules_hold_no_command_and_no_repository_path(path):
    source = path.read_text()
    assert "__main__" not in source, f"{path.name} runs as a command: move its main() to common/cli/"
    assert "__file__" not in source, f"{path.name} locates the repository: only common/cli/ may"
