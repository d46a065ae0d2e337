#!/usr/bin/env python
"""Download the authors' trained ResNet42 teachers, one per task, to
checkpoint/teacher/<task>/model_best.pth.tar (docs/method.md#file-formats).

    python download/download_checkpoint.py --name all     # or: tiny_imagenet (the 10 splits), tiny_imagenet-3, cub, ...
    python download/download_checkpoint.py --dry-run

A thin CLI over dass.download (resume, retries, sha256, mirrors: see dass/download_manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
from _entry import run   # download/_entry.py, beside this script

if __name__ == "__main__":
    run("checkpoint", "download_checkpoint.py")
