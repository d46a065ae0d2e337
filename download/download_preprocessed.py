#!/usr/bin/env python
"""Download the authors' preprocessed meta-training database (preprocessed.zip) and unpack it
safely into the repository root, giving preprocessed/... (docs/method.md#file-formats).

    python download/download_preprocessed.py
    python download/download_preprocessed.py --url https://my.mirror/preprocessed.zip

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
    sys.exit(main("preprocessed", prog="download_preprocessed.py"))
