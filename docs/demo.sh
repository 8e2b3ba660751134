#!/usr/bin/env bash
# What `make demo` runs. Argument: the voltloop executable.
set -euo pipefail
voltloop=${1:-voltloop}
work=$(mktemp -d "${TMPDIR:-/tmp}/voltloop-demo.XXXXXX")
echo "voltloop demo in $work"
"$voltloop" --help
