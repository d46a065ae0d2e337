#!/usr/bin/env python
"""Download the Debian bookworm packages that the real image sources render (dass.data.sources):
the font packages (group ``fonts``: their usr/share/fonts/ unpacked into data/sources/fonts/) and the
icon-theme packages (group ``icons``: their usr/share/icons/ into data/sources/icons/).

    python download/download_sources.py                                 # both groups, every package
    python download/download_sources.py --group fonts                   # or: --group icons
    python download/download_sources.py --name fonts-dejavu-core papirus-icon-theme
    python download/download_sources.py --group icons --from-folder /var/cache/apt/archives  # apt-get download ...
    python download/download_sources.py --group fonts --dry-run

Each package is verified against the SHA256 of Debian's Packages index (dass/download_manifest.yaml, whose
entries download/debian_entries.py regenerates), unpacked safely, then deleted; a hidden
.<package>.extracted marker keeps its digest so that a re-run skips it.
Fashion-MNIST, the third source, is a dataset: python download/download_dataset.py --name fashion_mnist.

A thin CLI over dass.download (resume, retries, sha256, mirrors: see dass/download_manifest.yaml).
Exit status 2 with a one-line "error: ..." on stderr for any problem the user can fix.
"""
from _entry import run   # download/_entry.py, beside this script

if __name__ == "__main__":
    run(("fonts", "icons"), "download_sources.py")
