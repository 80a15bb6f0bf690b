#!/usr/bin/env bash
# An S3-compatible server on this machine for trying team mode and Kubeflow runs: moto's
# server mode (pip install 'moto[server]', in shipml's dev extra), with a bucket. Prints
# the variables to export (made-up keys; moto accepts any):
#   eval "$(scripts/s3-server.sh)"
# PORT (default 9000) and BUCKET (default shipml) set where. Data lives in memory: it
# is gone when the server stops (kill "$(cat /tmp/shipml-s3-$PORT.pid)").
# MinIO, where it can be installed, works the same way: point AWS_ENDPOINT_URL at it.
set -euo pipefail
PORT=${PORT:-9000}
BUCKET=${BUCKET:-shipml}
PYTHON=${PYTHON:-.venv/bin/python}
URL="http://127.0.0.1:$PORT"
if ! curl -s -o /dev/null "$URL"; then
  nohup "$PYTHON" -m moto.server -H 127.0.0.1 -p "$PORT" >"/tmp/shipml-s3-$PORT.log" 2>&1 &
  echo $! >"/tmp/shipml-s3-$PORT.pid"
  for _ in $(seq 1 100); do curl -s -o /dev/null "$URL" && break; sleep 0.1; done
fi
export AWS_ACCESS_KEY_ID=shipml AWS_SECRET_ACCESS_KEY=shipml-local AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="$URL"
"$PYTHON" -c "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])" "$BUCKET" \
  >/dev/null 2>&1 || true
echo "export AWS_ENDPOINT_URL=$URL AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
  "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION"
