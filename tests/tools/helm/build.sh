#!/usr/bin/env bash
# Prints the path of the helm v4.3.2 binary the tests use, building it first
# when the cache does not have it (../go-tool.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"
build_go_tool helm v4.3.2 helm.sh/helm/v4/cmd/helm
