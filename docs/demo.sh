#!/usr/bin/env bash
# What `make demo` runs: the built-in dry run — the Attia et al. ten-minute
# fast-charge space, 4 rounds x 48 channels on the simulated cycler, early
# prediction at cycle 100, then the 5 best protocols confirmed on 2 fresh cells
# each, run to end of life — into voltloop.db in the working directory.
# Running it again resumes (and, once finished, just summarises) that campaign.
set -euo pipefail
voltloop=${1:-voltloop}
"$voltloop" dry-run
echo
echo "Look inside:  $voltloop status   |   $voltloop db query experiments --format table"
