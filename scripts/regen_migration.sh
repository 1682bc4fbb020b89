#!/usr/bin/env bash
# Regenerate the initial migration from the models (only while nothing is deployed).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/*.py
SIWA_SQLALCHEMY_DATABASE_URI="sqlite:///$tmp/regen.sqlite" .venv/bin/flask --app app db migrate -m "initial schema" --rev-id 0001
sed -i 's/siwa_web\.models\.base\.UTCDateTime()/siwa_web.models.base.UTCDateTime()/g' migrations/versions/*.py
rm -rf "$tmp"
