#!/usr/bin/env bash
# Installs dependencies, builds Turnpike (Release) and runs it in the foreground on
# conf/turnpike.yaml (or the file given as $1). Try: curl localhost:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTURNPIKE_TESTS=OFF >/dev/null
cmake --build build --target turnpike
exec build/src/app/turnpike -c "${1:-conf/turnpike.yaml}"
