#!/usr/bin/env python
"""Download the authors' trained ResNet42 teachers, one per task, to
checkpoint/teacher/<task>/model_best.pth.tar (docs/method.md#file-formats).

    python download/download_checkpoint.py --name all     # or: tiny_imagenet (the 10 splits), tiny_imagenet-3, cub, ...
    python download/download_checkpoint.py --dry-run

A thin CLI over dass.download (resume, retries, sha256, mirrors: see download/manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
import sys
from pathlib import Path

# Runnable as a plain script from anywhere: make the repository's dass package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dass.download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("checkpoint", prog="download_checkpoint.py"))
