"""One module per ``main.py`` subcommand: ``add_arguments(parser)`` and ``run(cfg, args) -> int``."""
