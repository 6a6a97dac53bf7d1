#!/bin/sh
# Seed the model store (IOTSTREAM_MODEL_STORE, e.g. s3://models/fleet on the compose MinIO)
# with the versions shipped in the image, and point the alias IOTSTREAM_MODEL_ALIAS
# (default production) at each model's newest shipped version where that alias does not
# exist yet. Safe to re-run: a version already published is left alone (published versions
# are never overwritten) and an alias that exists is never moved, so a rollout made with
# `iotstream models alias|canary|promote` survives `docker compose up`.
#   usage: model-store-init.sh [MODELS_DIR]     (default /app/models, the image's models)
# IOTSTREAM_CLI names the command (default `iotstream`; the worker image's build runs it as
# `python -m iotstream` to seed its model cache: compose/Dockerfile, stage worker-site).
set -eu
models=${1:-/app/models}
iotstream=${IOTSTREAM_CLI:-iotstream}
alias=${IOTSTREAM_MODEL_ALIAS:-production}
: "${IOTSTREAM_MODEL_STORE:?name the store in IOTSTREAM_MODEL_STORE}"
$iotstream models init
for model in "$models"/*/; do
  name=$(basename "$model")
  newest=""
  for folder in $(ls -d "$model"*/ | sort -V); do
    [ -f "$folder/manifest.json" ] || continue
    newest=$(basename "$folder")
    if ! out=$($iotstream models publish "$folder" 2>&1); then
      case $out in
        *"already published"*) echo "$name $newest: already in the store" ;;
        *) echo "$out" >&2; exit 1 ;;
      esac
    else
      echo "$out"
    fi
  done
  [ -n "$newest" ] || continue
  if $iotstream models alias "$name" "$alias" > /dev/null 2>&1; then
    echo "$name@$alias exists: left as is"
  else
    $iotstream models alias "$name" "$alias" "$newest"
  fi
done
$iotstream models versions
