#!/bin/bash
#SBATCH --partition=gpu
#SBATCH --account=research
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=256M
#SBATCH --gres=gpu:1
#SBATCH --time=0-00:10:00
# hpcflow 0.1.0: workflow quickstart, run sst-20261122-0153-3f9c, step ras
# Submitted by hpcflow as: sbatch [--array=IDS] [--dependency=...] THIS_SCRIPT TASKS_FILE
# TASKS_FILE has one line per element: "<task id><TAB>export HPCFLOW_INDEX=... HPCFLOW_ITEM_<axis>=..."
# A packed array task (pack:) has several lines with its task id and runs them all.
set -uo pipefail

export HPCFLOW_RUN_ID=sst-20261122-0153-3f9c
export HPCFLOW_RUN_DIR=/scratch/hpcflow/sst/sst-20261122-0153-3f9c
export HPCFLOW_STEP=ras
export HPCFLOW_WORKFLOW_DIR=<REPO>/examples/quickstart

hpcflow_tasks=${1:?usage: sbatch SCRIPT TASKS_FILE}
hpcflow_task_id=${SLURM_ARRAY_TASK_ID:-0}
mapfile -t hpcflow_lines < <(awk -F '\t' -v t="$hpcflow_task_id" '$1 == t' "$hpcflow_tasks")
set -- "${hpcflow_lines[@]}" # the task's element lines; $# counts them
if (($# == 0)); then
  echo "hpcflow: no task $hpcflow_task_id in $hpcflow_tasks" >&2
  exit 97
fi

hpcflow_element() { # LINE: one element, in a subshell: its own directory, logs and result
eval "${1#*$'\t'}"
hpcflow_shard=$((HPCFLOW_INDEX / 1000))
export HPCFLOW_TASK_DIR="$HPCFLOW_RUN_DIR/steps/$HPCFLOW_STEP/$hpcflow_shard/$HPCFLOW_INDEX"
hpcflow_logs="$HPCFLOW_RUN_DIR/logs/$HPCFLOW_STEP/$hpcflow_shard"
# made here, on the compute node, not by submit (docs/packing.md#element-directories)
mkdir -m 0750 -p "$HPCFLOW_TASK_DIR" "$hpcflow_logs" && mkdir -m 0750 -p "$HPCFLOW_TASK_DIR/.hpcflow" || exit 98
exec >>"$hpcflow_logs/$HPCFLOW_INDEX.out" 2>>"$hpcflow_logs/$HPCFLOW_INDEX.err"
# Slurm requeued this task (node failure, preemption): an element this same task completed
# before is kept, never run twice to completion (docs/faults.md#requeue)
if ((${SLURM_RESTART_COUNT:-0} > 0)) && grep -qs "\"state\": \"COMPLETED\".*\"slurm_job_id\": \"${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}\"" "$HPCFLOW_TASK_DIR/.hpcflow/result.json"; then
  echo "hpcflow: $(date -Iseconds) index $HPCFLOW_INDEX: completed before this task was requeued; kept" >&2
  exit 0
fi
rm -f "$HPCFLOW_TASK_DIR/.hpcflow/skipped" "$HPCFLOW_TASK_DIR/.hpcflow/result.json"
hpcflow_tool=(python3 "$HPCFLOW_RUN_DIR/scripts/hpcflow_job.py")
hpcflow_start=$(date +%s)
hpcflow_us() { # microseconds since the epoch: bash 5's EPOCHREALTIME (any locale's separator), else date
  local t=${EPOCHREALTIME:-}
  [[ -n $t ]] && echo "${t/[.,]/}" || date +%s%6N
}
hpcflow_t0=$(hpcflow_us)
hpcflow_result() { # STATE EXIT_CODE ATTEMPTS: what status --tasks, manifests and when: read
  local outputs=false # whether the tracker needs to read outputs.json at all
  [[ -e $HPCFLOW_TASK_DIR/outputs.json ]] && outputs=true
  # this element's own use (docs/efficiency.md): wall time, and the CPU time of everything it
  # ran (this subshell's waited-for children: fields 16-17 of /proc/PID/stat, in 1/100 s)
  local wall_ms=$((($(hpcflow_us) - hpcflow_t0) / 1000)) cpu_ms=null st
  if read -r -a st </proc/$BASHPID/stat 2>/dev/null && [[ ${st[1]} == *")" ]]; then
    cpu_ms=$(((st[15] + st[16]) * 10))
  fi
  printf '{"index": %d, "state": "%s", "exit_code": %d, "attempts": %d, "start": %d, "end": %d, "slurm_job_id": "%s", "outputs": %s, "wall_ms": %d, "cpu_ms": %s}\n' \
    "$HPCFLOW_INDEX" "$1" "$2" "$3" "$hpcflow_start" "$(date +%s)" \
    "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}" "$outputs" \
    "$wall_ms" "$cpu_ms" \
    >"$HPCFLOW_TASK_DIR/.hpcflow/result.json.tmp" &&
    mv -f "$HPCFLOW_TASK_DIR/.hpcflow/result.json.tmp" "$HPCFLOW_TASK_DIR/.hpcflow/result.json"
}
hpcflow_fail() { # EXIT_CODE MESSAGE: hpcflow itself could not run the element
  echo "hpcflow: $2" >&2
  hpcflow_result FAILED "$1" 0
  exit "$1"
}
hpcflow_skip=
if [[ -z $hpcflow_skip && -e $HPCFLOW_UPSTREAM_1_TASK_DIR/.hpcflow/skipped ]]; then
  hpcflow_skip="upstream hms element was skipped"
fi
if [[ -n $hpcflow_skip ]]; then
  echo "hpcflow: $(date -Iseconds) SKIPPED: $hpcflow_skip" >&2
  printf '%s\n' "$hpcflow_skip" >"$HPCFLOW_TASK_DIR/.hpcflow/skipped"
  hpcflow_result SKIPPED 0 0
  exit 0
fi

hpcflow_run() {
  cd "$HPCFLOW_TASK_DIR" || return 98
  set +u -eo pipefail
python3 <REPO>/examples/quickstart/bin/ras.py --event "${HPCFLOW_ITEM_event}" --unit "${HPCFLOW_ITEM_unit}" \
  --hms "${HPCFLOW_UPSTREAM_1_TASK_DIR}" --out "${HPCFLOW_TASK_DIR}"
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
}

if (($# == 1)); then
  (hpcflow_element "$1")
  exit
fi
# packed: every element in its own subshell, up to 1 at once; the task fails if
# any element failed (its first non-zero exit code), so afterok/afternotok see the task's fate.
# With python on the node, the job tool runs them (wait4: each element's own peak memory);
# without it, this bash loop does the same, without the peaks.
echo "hpcflow: $(date -Iseconds) task $hpcflow_task_id: $# elements, up to 1 at once" >&2
if command -v python3 >/dev/null 2>&1; then
  export -f hpcflow_element
  # the lines are read from the tasks file again: as argv, a pack of long lines is over ARG_MAX
  python3 "$HPCFLOW_RUN_DIR/scripts/hpcflow_job.py" pack 1 --tasks "$hpcflow_tasks" "$hpcflow_task_id"
  hpcflow_status=$?
  echo "hpcflow: $(date -Iseconds) task $hpcflow_task_id: exit code $hpcflow_status" >&2
  exit "$hpcflow_status"
fi
hpcflow_parallel=1
hpcflow_status=0
hpcflow_running=0
hpcflow_reap() {
  wait -n
  local rc=$?
  hpcflow_running=$((hpcflow_running - 1))
  ((rc != 0 && hpcflow_status == 0)) && hpcflow_status=$rc
  return 0
}
for hpcflow_l in "$@"; do
  ((hpcflow_running >= hpcflow_parallel)) && hpcflow_reap
  (hpcflow_element "$hpcflow_l") &
  hpcflow_running=$((hpcflow_running + 1))
done
while ((hpcflow_running > 0)); do hpcflow_reap; done
echo "hpcflow: $(date -Iseconds) task $hpcflow_task_id: exit code $hpcflow_status" >&2
exit "$hpcflow_status"
