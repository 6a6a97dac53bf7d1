#!/bin/sh
# The worker image's packages (compose/Dockerfile, stage worker-site; docs/deploy.md, "Image
# size per role"): what `iotstream worker` and `iotstream ingest` import, versions from the
# lock, installed into one folder for the distroless base (PYTHONPATH; a venv would point at
# an interpreter distroless does not have), then trimmed of what no role runs.
#   usage: worker-site.sh LOCK TARGET [extra pip options, e.g. --platform for a size estimate]
# boto3 is in: workers follow an S3 model store (WORKER_MODEL_STORE=s3://...); botocore keeps
# only the service models of S3 and STS (its other ~400 services are 22 MB of JSON).
set -eu
lock=$1
target=$2
shift 2
pip=${PIP:-python -m pip}
# redis-py needs async-timeout below Python 3.11.3 (distroless/Debian 12 has 3.11.2; the build
# stage's newer Python would skip the lock's marker), so name it with the lock's pin.
async_timeout=$(grep -o '^async-timeout==[^ ;]*' "$lock")
$pip install --no-cache-dir --only-binary=:all: --target "$target" -c "$lock" "$@" \
  onnxruntime numpy paho-mqtt pydantic pydantic-settings orjson msgpack 'redis[hiredis]' \
  prometheus-client boto3 "$async_timeout"
# Trim: ONNX Runtime's model tools (transformers, quantization: build time only), the test
# suites, botocore's models of services iotstream never calls, console scripts.
rm -rf "$target/onnxruntime/transformers" "$target/onnxruntime/quantization" \
  "$target/onnxruntime/tools" "$target/bin"
find "$target" -depth -type d -name tests -path '*/numpy/*' -exec rm -rf {} +
find "$target/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts \
  -exec rm -rf {} +
