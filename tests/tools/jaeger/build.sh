#!/usr/bin/env bash
# Prints the path of the Jaeger v1.75.0 binary (cmd/jaeger, the v2 backend
# built on the OpenTelemetry collector) that the trace tests use, building it
# first when the cache does not have it (../go-tool.sh). The first build takes
# several minutes on two cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"
build_go_tool jaeger v1.75.0 github.com/jaegertracing/jaeger/cmd/jaeger
