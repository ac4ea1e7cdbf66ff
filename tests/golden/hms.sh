#!/bin/bash
#SBATCH --partition=debug
#SBATCH --account=research
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=256M
#SBATCH --time=0-00:10:00
# hpcflow 0.1.0: workflow quickstart, run sst-20261122-0153-3f9c, step hms
# Submitted by hpcflow as: sbatch [--array=IDS] [--dependency=...] THIS_SCRIPT TASKS_FILE
# TASKS_FILE has one line per array task: "<task id><TAB>export HPCFLOW_INDEX=... HPCFLOW_ITEM_<axis>=..."
set -uo pipefail

export HPCFLOW_RUN_ID=sst-20261122-0153-3f9c
export HPCFLOW_RUN_DIR=/scratch/hpcflow/sst/sst-20261122-0153-3f9c
export HPCFLOW_STEP=hms
export HPCFLOW_WORKFLOW_DIR=<REPO>/examples/quickstart

hpcflow_tasks=${1:?usage: sbatch SCRIPT TASKS_FILE}
hpcflow_task_id=${SLURM_ARRAY_TASK_ID:-0}
hpcflow_line=$(awk -F '\t' -v t="$hpcflow_task_id" '$1 == t { print; exit }' "$hpcflow_tasks")
if [[ -z $hpcflow_line ]]; then
  echo "hpcflow: no task $hpcflow_task_id in $hpcflow_tasks" >&2
  exit 97
fi
eval "${hpcflow_line#*$'\t'}"
hpcflow_shard=$((HPCFLOW_INDEX / 1000))
export HPCFLOW_TASK_DIR="$HPCFLOW_RUN_DIR/steps/$HPCFLOW_STEP/$hpcflow_shard/$HPCFLOW_INDEX"
hpcflow_logs="$HPCFLOW_RUN_DIR/logs/$HPCFLOW_STEP/$hpcflow_shard"
mkdir -p "$HPCFLOW_TASK_DIR/.hpcflow" "$hpcflow_logs" || exit 98
exec >>"$hpcflow_logs/$HPCFLOW_INDEX.out" 2>>"$hpcflow_logs/$HPCFLOW_INDEX.err"
rm -f "$HPCFLOW_TASK_DIR/.hpcflow/skipped" "$HPCFLOW_TASK_DIR/.hpcflow/result.json"
export HPCFLOW_UPSTREAM_0_TASK_DIR=/scratch/hpcflow/sst/sst-20261122-0153-3f9c/steps/sample/0/0
export CC_EVENT_IDENTIFIER="${HPCFLOW_ITEM_event}"
hpcflow_tool=(python3 "$HPCFLOW_RUN_DIR/scripts/hpcflow_job.py")
hpcflow_start=$(date +%s)
hpcflow_result() { # STATE EXIT_CODE ATTEMPTS: what status --tasks, manifests and when: read
  printf '{"index": %d, "state": "%s", "exit_code": %d, "attempts": %d, "start": %d, "end": %d, "slurm_job_id": "%s"}\n' \
    "$HPCFLOW_INDEX" "$1" "$2" "$3" "$hpcflow_start" "$(date +%s)" \
    "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}" \
    >"$HPCFLOW_TASK_DIR/.hpcflow/result.json.tmp" &&
    mv -f "$HPCFLOW_TASK_DIR/.hpcflow/result.json.tmp" "$HPCFLOW_TASK_DIR/.hpcflow/result.json"
}
hpcflow_fail() { # EXIT_CODE MESSAGE: hpcflow itself could not run the element
  echo "hpcflow: $2" >&2
  hpcflow_result FAILED "$1" 0
  exit "$1"
}
hpcflow_skip=
if [[ -n $hpcflow_skip ]]; then
  echo "hpcflow: $(date -Iseconds) SKIPPED: $hpcflow_skip" >&2
  printf '%s\n' "$hpcflow_skip" >"$HPCFLOW_TASK_DIR/.hpcflow/skipped"
  hpcflow_result SKIPPED 0 0
  exit 0
fi

hpcflow_run() {
  cd "$HPCFLOW_TASK_DIR" || return 98
  set +u -eo pipefail
python3 <REPO>/examples/quickstart/bin/hms.py --event "${HPCFLOW_ITEM_event}" \
  --storms /scratch/hpcflow/sst/sst-20261122-0153-3f9c/storms.csv --fail-event 3 --out "${HPCFLOW_TASK_DIR}"
}

hpcflow_waits=()
hpcflow_attempts=1
hpcflow_retry_on=''
hpcflow_never=''
hpcflow_attempt=1
while :; do
  echo "hpcflow: $(date -Iseconds) ${SLURM_JOB_ID:-?} index $HPCFLOW_INDEX attempt $hpcflow_attempt on $(hostname)" >&2
  (hpcflow_run)
  hpcflow_rc=$?
  ((hpcflow_rc == 0)) && break
  ((hpcflow_attempt >= hpcflow_attempts)) && break
  [[ " $hpcflow_never " == *" $hpcflow_rc "* ]] && break
  [[ -n $hpcflow_retry_on && " $hpcflow_retry_on " != *" $hpcflow_rc "* ]] && break
  hpcflow_wait=${hpcflow_waits[hpcflow_attempt - 1]}
  echo "hpcflow: exit code $hpcflow_rc; retrying in ${hpcflow_wait}s" >&2
  sleep "$hpcflow_wait"
  hpcflow_attempt=$((hpcflow_attempt + 1))
done
hpcflow_result "$( ((hpcflow_rc == 0)) && echo COMPLETED || echo FAILED)" "$hpcflow_rc" "$hpcflow_attempt"
echo "hpcflow: $(date -Iseconds) exit code $hpcflow_rc after $hpcflow_attempt attempt(s)" >&2
exit "$hpcflow_rc"
