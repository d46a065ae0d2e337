#!/usr/bin/env python
"""Download the authors' preprocessed meta-training database (preprocessed.zip) and unpack it
safely into the repository root, giving preprocessed/... (docs/method.md#file-formats).

    python download/download_preprocessed.py
    python download/download_preprocessed.py --url https://my.mirror/preprocessed.zip

A thin CLI over dass.download (resume, retries, sha256, mirrors: see dass/download_manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
from _entry import run   # download/_entry.py, beside this script

if __name__ == "__main__":
    run("preprocessed", "download_preprocessed.py")
