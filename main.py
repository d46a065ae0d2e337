#!/usr/bin/env python3
"""DaSS command line: ``python main.py COMMAND --config configs/demo.yaml [key=value ...]``."""
import sys

from dass.cli import main

if __name__ == "__main__":
    sys.exit(main())
