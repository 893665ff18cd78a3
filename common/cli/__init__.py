"""The suite's commands: `python3 -m common.cli.bench`, `python3 -m common.cli.report`,
`python3 -m common.cli.nas` and `python3 -m common.cli.cache`.

Argument parsing, printing and repository paths (experiments/, results/) live here, so that the library
modules in common/ stay importable and testable without them.
"""
