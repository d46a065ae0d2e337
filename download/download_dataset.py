#!/usr/bin/env python
"""Download the datasets the authors publish (Tiny ImageNet + splits, CUB, DTD, QuickDraw, Stanford Cars)
into data/<name>/ as numpy arrays (docs/method.md#benchmark).

    python download/download_dataset.py --name all            # or: cub dtd quickdraw stanford_cars tiny_imagenet
    python download/download_dataset.py --name fashion_mnist --from-folder /usr/share/datasets/fashion-mnist
    python download/download_dataset.py --name cub --dry-run  # list URLs and destinations only
    DASS_MIRROR=https://my.mirror/dass python download/download_dataset.py --name all

A thin CLI over dass.download (resume, retries, sha256, mirrors: see dass/download_manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
from _entry import run   # download/_entry.py, beside this script

if __name__ == "__main__":
    run("dataset", "download_dataset.py")
