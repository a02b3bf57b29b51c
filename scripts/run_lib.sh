# Shared machinery of the run_examples_*.sh scripts. Sourced, not run:
#
#     source "$(dirname "$0")/scripts/run_lib.sh" "$@"
#     add_task seqcls pubmedqa_hf --do_train ... --overwrite_output_dir    # one block per task
#     run_tasks
#
# add_task only queues a run; run_tasks checks that every queued run has its data, then runs them
# (or prints them with --dry-run). A run is `python -u -m <module of KIND> --model_name_or_path
# $MODEL_PATH --train_file $DATA_DIR/KIND/TASK/train.json --validation_file .../dev.json
# --test_file .../test.json FLAGS --output_dir $OUT_DIR/TASK/$MODEL`, its output tee'd to
# <output_dir>/log.txt. With every switch off the flags are exactly the ones written in the script.
#
# Switches (environment variables, all off by default):
#   DRY_RUN=1 (or --dry-run)  print the commands instead of running them
#   SMOKE=1       a short run on real data (--max_steps 20, 200/100/100 samples) into runs/smoke/;
#                 SMOKE_FLAGS="--max_steps 5 ..." replaces the flags it appends
#   RESUMABLE=1   checkpoint every epoch and drop --overwrite_output_dir, so a rerun resumes
#   SEEDS="1 2 3" one run per seed, into <output_dir>/seed<N>; replaces the script's own --seed
#   PARALLEL=1    one run per GPU at a time, each pinned with CUDA_VISIBLE_DEVICES (GPUS="0 1"
#                 picks the GPUs; default: CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists)
# Paths: MODEL_PATH (hub id or folder), DATA_DIR (default data), OUT_DIR (default runs), PYTHON.

# Plain bash 4.2+ (no `set -u`: empty arrays trip it before bash 4.4, still common on clusters).

DRY_RUN=${DRY_RUN:-0}
SMOKE=${SMOKE:-0}
RESUMABLE=${RESUMABLE:-0}
SEEDS=${SEEDS:-}
PARALLEL=${PARALLEL:-0}
PYTHON=${PYTHON:-python3}
DATA_DIR=${DATA_DIR:-data}
if [[ $SMOKE == 1 ]]; then
  OUT_DIR=${OUT_DIR:-runs/smoke}  # never write over the results of real runs
else
  OUT_DIR=${OUT_DIR:-runs}
fi

# The flags SMOKE=1 appends: enough steps and samples to exercise training, dev and test.
read -r -a _smoke_flags <<< \
  "${SMOKE_FLAGS:---max_steps 20 --max_train_samples 200 --max_eval_samples 100 --max_predict_samples 100}"

_script=$(basename "$0")
_wanted=()     # task names given on the command line (empty: every task)
_help=0
for _arg in "$@"; do
  case $_arg in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) _help=1 ;;
    -*) echo "$_script: unknown option $_arg (try --help)" >&2; exit 2 ;;
    *) _wanted+=("$_arg") ;;
  esac
done

# The queue, one entry per run (or "wait" barrier), as parallel arrays.
_q_label=()    # task name plus seed, for messages
_q_out=()      # output folder
_q_cmd=()      # the command, shell-quoted (run with eval)
_known=()      # every task the script declares
_missing=()    # data files that are not there

die() { echo "$_script: $*" >&2; exit 2; }

module_of() {
  case $1 in
    qa) echo linkbert.qa.run_qa ;;
    seqcls) echo linkbert.seqcls.run_seqcls ;;
    tokcls) echo linkbert.tokcls.run_ner ;;
    mc) echo linkbert.mc.run_multiple_choice ;;
    *) die "unknown task kind '$1' (qa, seqcls, tokcls or mc)" ;;
  esac
}

is_wanted() {
  local name=$1 w
  [[ ${#_wanted[@]} -eq 0 ]] && return 0
  for w in "${_wanted[@]}"; do [[ $w == "$name" ]] && return 0; done
  return 1
}

# add_task KIND TASK [data=DIR] [splits="TRAIN DEV TEST"] [out=NAME] [from_run=TASK] FLAGS...
#   data      data folder under $DATA_DIR (default KIND/TASK)
#   splits    file names (without .json) given as train, validation and test file
#   out       run folder name under $OUT_DIR (default TASK)
#   from_run  load the model fine-tuned by that task's run (same model and seed), not $MODEL_PATH
add_task() {
  local kind=$1 name=$2
  shift 2
  local data=$kind/$name splits="train dev test" out=$name from_run=""
  while [[ $# -gt 0 && $1 != -* ]]; do
    case ${1%%=*} in
      data|splits|out|from_run) local "${1%%=*}=${1#*=}" ;;
      *) die "add_task $name: unknown setting '$1'" ;;
    esac
    shift
  done
  local module
  module=$(module_of "$kind") || exit 2
  _known+=("$name")
  is_wanted "$name" || return 0

  local -a files
  read -r -a files <<< "$splits"
  [[ ${#files[@]} -eq 3 ]] || die "add_task $name: splits needs three names, got '$splits'"
  local f
  for f in "${files[@]}"; do
    [[ -f $DATA_DIR/$data/$f.json ]] || _missing+=("$DATA_DIR/$data/$f.json")
  done

  local seed
  for seed in ${SEEDS:-none}; do
    local outdir=$OUT_DIR/$out/$MODEL model=$MODEL_PATH label=$name
    if [[ $seed != none ]]; then
      outdir+=/seed$seed
      label+=" (seed $seed)"
    fi
    if [[ -n $from_run ]]; then
      model=$OUT_DIR/$from_run/$MODEL
      [[ $seed != none ]] && model+=/seed$seed
    fi
    local -a cmd=("$PYTHON" -u -m "$module" --model_name_or_path "$model"
      --train_file "$DATA_DIR/$data/${files[0]}.json"
      --validation_file "$DATA_DIR/$data/${files[1]}.json"
      --test_file "$DATA_DIR/$data/${files[2]}.json")
    _adjust_flags "$seed" "$@"
    cmd+=("${_flags[@]}" --output_dir "$outdir")
    _q_label+=("$label")
    _q_out+=("$outdir")
    _q_cmd+=("$(printf '%q ' "${cmd[@]}")")
  done
}

# The script's flags after the switches: SEEDS replaces --seed, RESUMABLE swaps --save_strategy no
# for per-epoch checkpoints and drops --overwrite_output_dir, SMOKE appends its limits. Sets _flags.
_adjust_flags() {
  local seed=$1
  shift
  _flags=()
  local training=0 a
  for a in "$@"; do [[ $a == --do_train ]] && training=1; done
  while [[ $# -gt 0 ]]; do
    case $1 in
      --seed)
        if [[ $seed != none ]]; then shift 2; continue; fi ;;
      --save_strategy)
        if [[ $RESUMABLE == 1 && $training == 1 ]]; then shift 2; continue; fi ;;
      --overwrite_output_dir)
        if [[ $RESUMABLE == 1 && $training == 1 ]]; then shift; continue; fi ;;
    esac
    _flags+=("$1")
    shift
  done
  [[ $seed != none ]] && _flags+=(--seed "$seed")
  [[ $RESUMABLE == 1 && $training == 1 ]] && _flags+=(--save_strategy epoch --save_total_limit 1)
  [[ $SMOKE == 1 ]] && _flags+=("${_smoke_flags[@]}")
  return 0
}

# Runs queued after this start only once every run queued before it has finished, and only if
# all of them succeeded (a later run may use their model: it must not test a stale one).
wait_for_tasks_above() {
  _q_label+=("")
  _q_out+=("")
  _q_cmd+=(wait)
}

_usage() {
  cat <<EOF
usage: bash $_script [--dry-run] [TASK ...]

Fine-tunes $MODEL ($MODEL_PATH) on each task below (all of them unless some are named),
one after another, with the original LinkBERT hyper-parameters; each run's output goes to
$OUT_DIR/TASK/$MODEL and its log to log.txt there.

tasks: ${_known[*]}

switches (environment): DRY_RUN=1 SMOKE=1 RESUMABLE=1 SEEDS="1 2 3" PARALLEL=1 GPUS="0 1"
paths (environment): MODEL_PATH DATA_DIR=$DATA_DIR OUT_DIR=$OUT_DIR PYTHON=$PYTHON
See the header of scripts/run_lib.sh for what each switch does.
EOF
}

_gpu_list() {
  local gpus=${GPUS:-${CUDA_VISIBLE_DEVICES:-}}
  if [[ -z $gpus ]] && command -v nvidia-smi > /dev/null; then
    gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null | tr '\n' ' ')
  fi
  echo "${gpus//,/ }"
}

_status=()     # exit status of each queued run, by queue index ("skipped" after a failed barrier)

# At a barrier: whether a run queued before queue index i failed.
_failed_before() {
  local j
  for ((j = 0; j < $1; j++)); do
    [[ ${_q_cmd[j]} == wait || ${_status[j]:-0} == 0 ]] || return 0
  done
  return 1
}

_skip() {
  _status[$1]=skipped
  echo "=== ${_q_label[$1]}: skipped, a run it waits for failed"
}

# Run entry i in the foreground, its output on the terminal and in log.txt.
_run_here() {
  local i=$1 tee_flags=()
  [[ $RESUMABLE == 1 ]] && tee_flags=(-a)  # keep the log of the interrupted attempt
  mkdir -p "${_q_out[i]}"
  echo "=== $(date '+%F %T') ${_q_label[i]} -> ${_q_out[i]}"
  eval "${_q_cmd[i]}" 2>&1 | tee "${tee_flags[@]}" "${_q_out[i]}/log.txt"
  _status[i]=${PIPESTATUS[0]}
}

# PARALLEL=1: slot k runs on GPU _gpus[k]; _slot_pid/_slot_job say what runs there.
_gpus=()
_slot_pid=()
_slot_job=()

_reap_finished() {
  local k
  for k in "${!_gpus[@]}"; do
    local pid=${_slot_pid[k]:-}
    if [[ -n $pid ]] && ! kill -0 "$pid" 2> /dev/null; then
      wait "$pid"
      local rc=$? i=${_slot_job[k]}
      _status[i]=$rc
      echo "=== $(date '+%F %T') ${_q_label[i]} on GPU ${_gpus[k]}: $([[ $rc == 0 ]] && echo done || echo "FAILED (exit $rc)")"
      _slot_pid[k]=""
    fi
  done
}

_free_slot() {
  local k
  for k in "${!_gpus[@]}"; do
    [[ -z ${_slot_pid[k]:-} ]] && { echo "$k"; return 0; }
  done
  return 1
}

_busy() {
  local k
  for k in "${!_gpus[@]}"; do [[ -n ${_slot_pid[k]:-} ]] && return 0; done
  return 1
}

_kill_running() {
  local k
  for k in "${!_gpus[@]}"; do
    # Each run is its own process group (set -m): end python and tee with it.
    [[ -n ${_slot_pid[k]:-} ]] && kill -TERM -- "-${_slot_pid[k]}" 2> /dev/null
  done
  echo "$_script: interrupted; stopped the runs in progress" >&2
  exit 130
}

_run_parallel() {
  read -r -a _gpus <<< "$(_gpu_list)"
  [[ ${#_gpus[@]} -gt 0 ]] || die "PARALLEL=1 found no GPU: set GPUS (e.g. GPUS=\"0 1 2 3\")"
  echo "running on GPUs: ${_gpus[*]} (one run per GPU; logs in each run's log.txt)"
  set -m  # every background run gets its own process group
  trap _kill_running INT TERM
  local i k blocked=0
  for i in "${!_q_cmd[@]}"; do
    if [[ ${_q_cmd[i]} == wait ]]; then
      while _busy; do sleep 1; _reap_finished; done
      _failed_before "$i" && blocked=1
      continue
    fi
    [[ $blocked == 1 ]] && { _skip "$i"; continue; }
    until k=$(_free_slot); do sleep 1; _reap_finished; done
    mkdir -p "${_q_out[i]}"
    echo "=== $(date '+%F %T') ${_q_label[i]} on GPU ${_gpus[k]} -> ${_q_out[i]}/log.txt"
    if [[ $RESUMABLE == 1 ]]; then
      CUDA_VISIBLE_DEVICES=${_gpus[k]} eval "${_q_cmd[i]}" >> "${_q_out[i]}/log.txt" 2>&1 &
    else
      CUDA_VISIBLE_DEVICES=${_gpus[k]} eval "${_q_cmd[i]}" > "${_q_out[i]}/log.txt" 2>&1 &
    fi
    _slot_pid[k]=$!
    _slot_job[k]=$i
  done
  while _busy; do sleep 1; _reap_finished; done
  trap - INT TERM
}

run_tasks() {
  if [[ $_help == 1 ]]; then _usage; exit 0; fi
  local w n
  for w in "${_wanted[@]}"; do
    for n in "${_known[@]}"; do [[ $n == "$w" ]] && continue 2; done
    die "no task '$w' in this script; its tasks: ${_known[*]}"
  done

  if [[ ${#_missing[@]} -gt 0 ]]; then
    if [[ $DRY_RUN == 1 ]]; then
      echo "# note: ${#_missing[@]} data file(s) missing, e.g. ${_missing[0]}" >&2
    else
      echo "$_script: missing data file(s):" >&2
      printf '  %s\n' "${_missing[@]}" >&2
      local fetch="bash scripts/download_data.sh"
      [[ $DATA_DIR == data ]] || fetch="DATA_DIR=$DATA_DIR $fetch"
      echo "Fetch and preprocess the data with:  $fetch" >&2
      echo "(or point DATA_DIR at a folder laid out like data/, or name only the tasks you have)" >&2
      exit 1
    fi
  fi

  local i
  if [[ $DRY_RUN == 1 ]]; then
    for i in "${!_q_cmd[@]}"; do
      if [[ ${_q_cmd[i]} == wait ]]; then
        echo "# wait until the runs above have finished"
      else
        echo "${_q_cmd[i]% }"
      fi
    done
    return 0
  fi

  echo "model $MODEL ($MODEL_PATH), data $DATA_DIR, output $OUT_DIR;" \
    "SMOKE=$SMOKE RESUMABLE=$RESUMABLE SEEDS='$SEEDS' PARALLEL=$PARALLEL"
  if [[ $PARALLEL == 1 ]]; then
    _run_parallel
  else
    local blocked=0
    for i in "${!_q_cmd[@]}"; do
      if [[ ${_q_cmd[i]} == wait ]]; then
        _failed_before "$i" && blocked=1
      elif [[ $blocked == 1 ]]; then
        _skip "$i"
      else
        _run_here "$i"
      fi
    done
  fi

  local failed=0
  echo "=== summary"
  for i in "${!_q_cmd[@]}"; do
    [[ ${_q_cmd[i]} == wait ]] && continue
    if [[ ${_status[i]} == 0 ]]; then
      echo "  ok      ${_q_label[i]}  ${_q_out[i]}"
    elif [[ ${_status[i]} == skipped ]]; then
      echo "  SKIPPED ${_q_label[i]}  (a run it waits for failed)"
      failed=$((failed + 1))
    else
      echo "  FAILED  ${_q_label[i]}  (exit ${_status[i]}; see ${_q_out[i]}/log.txt)"
      failed=$((failed + 1))
    fi
  done
  echo "Results beside the paper's:  python scripts/collect_results.py $OUT_DIR"
  [[ $failed == 0 ]] || { echo "$_script: $failed run(s) failed" >&2; exit 1; }
}
