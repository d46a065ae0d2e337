"""``dass download``: the downloads of ``download/*.py`` from an installed package (dass.download).

Takes the downloaders' own flags (``--group dataset|checkpoint|preprocessed|fonts|icons|all``, ``--name``,
``--root``, ``--mirror``, ``--from-folder``, ``--dry-run``, ...): ``dass download --group dataset --name cub``
is ``python download/download_dataset.py --name cub``.
"""
from __future__ import annotations

# handled before the config is loaded (dass.cli): the downloaders parse their own arguments
OWN_PARSER = True


def run_download(argv: list[str]) -> int:
    from ..download import GROUPS, main

    return main(GROUPS, argv, prog="dass download")
