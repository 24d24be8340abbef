#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. As root, a one-node SLURM cluster is started for
# the SLURM tests (and stopped at the end); elsewhere those tests are skipped with the reason.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0

started=0
stop_slurm() { if [ "$started" = 1 ]; then bash .ci/slurm/stop.sh || true; fi; }
trap stop_slurm EXIT
if [ "$(id -u)" = 0 ] && [ "${MOKD_SKIP_SLURM:-0}" != 1 ]; then
  if timeout -k 10 300 bash .ci/slurm/start.sh; then
    started=1
    export MOKD_REQUIRE_SLURM=1  # a cluster that started must also pass its tests
  else
    echo "[test] SLURM could not be started here: the SLURM tests will be reported as skipped"
  fi
fi
.venv/bin/python -m pytest -ra "$@"
