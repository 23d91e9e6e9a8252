#!/usr/bin/env bash
# Build the training corpus for MLC-C's bundled default model (models/default/).
# Run as root on Debian 12: installs open-data Debian packages, then builds
# tools/train_default_model/data/corpus.jsonl.gz with Python 3 (stdlib only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SEED="${SEED:-1234}"
export DEBIAN_FRONTEND=noninteractive
pkgs=(wordnet-base bible-kjv bible-kjv-text fortunes fortunes-min)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
for p in "${pkgs[@]}"; do
  echo "$p $(dpkg-query -W -f='${Version}' "$p")"
done > "$here/data.versions.txt" 2>/dev/null || true
mkdir -p "$here/data"
mv "$here/data.versions.txt" "$here/data/package_versions.txt"
python3 "$here/build_corpus.py" --seed "$SEED" --out "$here/data/corpus.jsonl.gz"
sha256sum "$here/data/corpus.jsonl.gz"
echo "uncompressed: $(gzip -dc "$here/data/corpus.jsonl.gz" | sha256sum)"
