"""The shared body of the download scripts: run dass.download for a group, from the installed package."""
import sys


def run(groups, prog: str) -> None:
    try:   # the installed package (pip install -e . in the checkout, or bash script/setup_env.sh)
        from dass.download import main
    except ImportError:
        sys.exit("error: the dass package is not installed; run `pip install -e .` in the checkout (or "
                 "`source script/setup_env.sh`) first")
    sys.exit(main(groups, prog=prog))
