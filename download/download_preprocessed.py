#!/usr/bin/env python
"""Download the authors' preprocessed meta-training database (preprocessed.zip) and unpack it
safely into the repository root, giving preprocessed/... (docs/method.md#file-formats).

    python download/download_preprocessed.py
    python download/download_preprocessed.py --url https://my.mirror/preprocessed.zip

A thin CLI over dass.download (resume, retries, sha256, mirrors: see download/manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
import sys
from pathlib import Path

# Runnable as a plain script from anywhere: make the repository's dass package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dass.download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("preprocessed", prog="download_preprocessed.py"))
