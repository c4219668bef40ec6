"""The parts of `textractd extract` (daemon/cli/extract.py): the inputs, where their texts
go, the progress display and the run itself. A package of its own so that the command
registry, which imports daemon.cli's modules, loads none of it for `textractd --help`."""
