#!/usr/bin/env python
"""Download the datasets the authors publish (Tiny ImageNet + splits, CUB, DTD, QuickDraw, Stanford Cars)
into data/<name>/ as numpy arrays (docs/method.md#benchmark).

    python download/download_dataset.py --name all            # or: cub dtd quickdraw stanford_cars tiny_imagenet
    python download/download_dataset.py --name cub --dry-run  # list URLs and destinations only
    DASS_MIRROR=https://my.mirror/dass python download/download_dataset.py --name all

A thin CLI over dass.download (resume, retries, sha256, mirrors: see dass/download_manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
import sys

try:   # the installed package (pip install -e . in the checkout, or bash script/setup_env.sh)
    from dass.download import main
except ImportError:
    sys.exit("error: the dass package is not installed; run `pip install -e .` in the checkout (or "
             "`source script/setup_env.sh`) first")

if __name__ == "__main__":
    sys.exit(main("dataset", prog="download_dataset.py"))
