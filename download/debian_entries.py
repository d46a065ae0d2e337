#!/usr/bin/env python
"""Regenerate the ``fonts`` and ``icons`` groups of dass/download_manifest.yaml from Debian's package index.

    python download/debian_entries.py            # print the generated entries
    python download/debian_entries.py --write    # replace them in dass/download_manifest.yaml

Run it on a Debian bookworm machine after ``apt-get update``. For every package below it asks
``apt-cache show --no-all-versions PKG`` (the candidate version only) for ``Filename`` and ``SHA256`` --
the digest of Debian's signed Packages index, so the downloader's sha256 check inherits Debian's
signature -- and writes one manifest entry per package:

    - {name: PKG, path: <file name of the .deb>, url: "http://deb.debian.org/debian/<Filename>",
       sha256: <SHA256>, deb: true}

between the ``# BEGIN debian_entries.py <group>`` / ``# END ...`` comment lines of the manifest, leaving
everything else in the file as it is. The package lists are the sources' choice (dass.data.sources):
fonts with a Latin alphabet and digits, and one package per freedesktop icon theme.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "dass" / "download_manifest.yaml"
POOL_URL = "http://deb.debian.org/debian/"
INDENT = " " * 6

FONT_PACKAGES = """
fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-ikarius fonts-adf-irianis
fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-solothurn fonts-adf-switzera
fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-agave fonts-allerta fonts-anonymous-pro fonts-arapey
fonts-averia-gwf fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-b612 fonts-bebas-neue fonts-beteckna
fonts-blankenburg fonts-breip fonts-cabin fonts-cabinsketch fonts-cantarell fonts-cardo fonts-century-catalogue
fonts-cherrybomb fonts-clear-sans fonts-cmu fonts-comfortaa fonts-comic-neue fonts-courier-prime fonts-creep2
fonts-crosextra-caladea fonts-crosextra-carlito fonts-croscore fonts-dancingscript fonts-dejavu-core
fonts-dejavu-extra fonts-dkg-handwriting fonts-dosis fonts-dustin fonts-ebgaramond fonts-ecolier-court
fonts-ecolier-lignes-court fonts-engadget fonts-essays1743 fonts-eurofurence fonts-f500 fonts-fantasque-sans
fonts-fanwood fonts-femkeklaver fonts-firacode fonts-freefont-ttf fonts-gamaliel fonts-georgewilliams
fonts-gnutypewriter fonts-go fonts-gotico-antiqua fonts-goudybookletter fonts-hack-ttf fonts-hermit
fonts-humor-sans fonts-inconsolata fonts-inter fonts-isabella fonts-jetbrains-mono fonts-joscelyn fonts-junction
fonts-junicode fonts-jura fonts-karla fonts-karmilla fonts-kaushanscript fonts-klaudia-berenika fonts-kristi
fonts-lato fonts-le-murmure fonts-league-mono fonts-league-spartan fonts-leckerli-one fonts-lemonada
fonts-levien-museum fonts-levien-typoscript fonts-liberation2 fonts-lindenhill fonts-linuxlibertine fonts-lmodern
fonts-lobster fonts-lobstertwo fonts-manrope fonts-monofur fonts-monoid fonts-mononoki fonts-national-park
fonts-oflb-euterpe fonts-okolaks fonts-oldstandard fonts-open-sans fonts-opendin fonts-opendyslexic fonts-oxygen
fonts-play fonts-prociono fonts-quattrocento fonts-quicksand fonts-radisnoir fonts-rampart fonts-reggae
fonts-roadgeek fonts-roboto-unhinted fonts-roboto-slab fonts-rocknroll fonts-routed-gothic fonts-rufscript
fonts-sil-andika fonts-sil-charis fonts-sil-doulos fonts-sil-gentiumplus fonts-sora fonts-staypuft fonts-stix
fonts-summersby fonts-texgyre fonts-tiresias fonts-tomsontalks fonts-train fonts-tuffy fonts-ubuntu-title
fonts-urw-base35 fonts-vollkorn fonts-yanone-kaffeesatz fonts-yrsa-rasa fonts-ocr-a fonts-ocr-b fonts-osifont
fonts-paratype fonts-cegui fonts-dseg fonts-atarismall fonts-sixtyfour fonts-glasstty
""".split()

ICON_PACKAGES = """
adwaita-icon-theme breeze-icon-theme oxygen-icon-theme papirus-icon-theme tango-icon-theme
elementary-xfce-icon-theme numix-icon-theme gnome-icon-theme mate-icon-theme lxde-icon-theme moka-icon-theme
faba-icon-theme paper-icon-theme suru-icon-theme deepin-icon-theme obsidian-icon-theme faenza-icon-theme
sugar-icon-theme gnome-icon-theme-nuovo gnome-icon-theme-yasis gnome-icon-theme-gartoon elementary-icon-theme
""".split()

GROUPS = {"fonts": FONT_PACKAGES, "icons": ICON_PACKAGES}


def parse_stanza(text: str) -> dict[str, str]:
    """The fields of the first stanza of ``apt-cache show`` output (continuation lines dropped)."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        m = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def apt_show(package: str) -> dict[str, str]:
    try:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("error: apt-cache is not installed; run this on a Debian bookworm machine")
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit(f"error: apt-cache knows no package {package}; run apt-get update (bookworm sources) or drop it")
    return parse_stanza(r.stdout)


def entry_line(package: str, fields: dict[str, str]) -> str:
    """One manifest entry (YAML flow mapping) for a package's index fields."""
    filename, sha = fields.get("Filename", ""), fields.get("SHA256", "").lower()
    if not re.fullmatch(r"pool/[\w.+~/-]+\.deb", filename) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        sys.exit(f"error: apt-cache show {package} gave no usable Filename/SHA256 ({filename!r}, {sha!r})")
    return (f'{INDENT}- {{name: {package}, path: {filename.rsplit("/", 1)[1]}, url: "{POOL_URL}{filename}", '
            f"sha256: {sha}, deb: true}}")


def markers(group: str) -> tuple[str, str]:
    return (f"{INDENT}# BEGIN debian_entries.py {group} (generated: edit download/debian_entries.py, not this)",
            f"{INDENT}# END debian_entries.py {group}")


def block(group: str, lines: list[str]) -> str:
    begin, end = markers(group)
    return "\n".join([begin, *lines, end])


def replace_block(text: str, group: str, new_block: str) -> str:
    """``text`` with the generated block of ``group`` (marker lines included) replaced by ``new_block``."""
    pattern = re.compile(rf"^[ \t]*# BEGIN debian_entries\.py {group}\b[^\n]*\n(?:.*?\n)??"
                         rf"[ \t]*# END debian_entries\.py {group}\b[^\n]*$", re.M | re.S)
    hits = list(pattern.finditer(text))
    if len(hits) != 1:
        sys.exit(f"error: the manifest needs exactly one '# BEGIN debian_entries.py {group}' ... "
                 f"'# END debian_entries.py {group}' block")
    return text[:hits[0].start()] + new_block + text[hits[0].end():]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the fonts/icons entries of dass/download_manifest.yaml "
                                             "from apt-cache (Debian bookworm).")
    ap.add_argument("--write", action="store_true", help=f"replace the entries in {MANIFEST} (default: print them)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="the manifest to rewrite")
    args = ap.parse_args(argv)
    blocks = {g: block(g, [entry_line(p, apt_show(p)) for p in pkgs]) for g, pkgs in GROUPS.items()}
    if not args.write:
        print("\n".join(blocks.values()))
        return 0
    text = args.manifest.read_text()
    for g, b in blocks.items():
        text = replace_block(text, g, b)
    tmp = args.manifest.with_name(f".{args.manifest.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.manifest)  # atomic: a kill leaves the old manifest
    print(f"wrote {sum(len(p) for p in GROUPS.values())} package entries into {args.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
