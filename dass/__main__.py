"""``python -m dass COMMAND ...``: the same CLI as the ``dass`` console script."""
from .cli import run

run()
