#!/usr/bin/env bash
# Reruns every CPU table of docs/results.md on the current code, resumably, and writes the tables with their
# provenance and the study's wall time (issue 31, item 5).
#   docs/studies/all.sh OUT [STEP ...]      run the steps (all, or these), then OUT/results_tables.md
#   docs/studies/all.sh --list              the steps: name, the section of docs/results.md, the commands
#   docs/studies/all.sh --tables OUT        rewrite the finished steps' tables and OUT/results_tables.md only
#
# One step per section of docs/results.md with CPU figures, in the document's order. Step S works in OUT/S/
# (commands shown with $D for that folder) and is skipped when OUT/S/DONE exists. An interrupted step runs
# again and its commands resume: python -m lwcl.main and bin/compare report finished runs and resume the
# others from their checkpoints, the study scripts skip what finished, timed_rounds.py keeps the measured
# rounds; benchmarks run again whole. Stop it with Ctrl-C (or SIGTERM to its process group). Every attempt
# of a step, finished or interrupted, appends `step<TAB>start<TAB>end<TAB>seconds<TAB>commit` to
# OUT/walltime.tsv; the total printed at the end (with this machine's CPU) is the sum of every line, so a
# study spread over several sessions adds up. An attempt SIGKILLed (a machine or session that ends without
# warning) cannot write its line: while a step runs, OUT/S/attempt.txt holds its start and commit and is
# touched every LWCL_ALL_HEARTBEAT seconds (30); the next all.sh run writes the dead attempt's line with its
# last touch as the end and `killed` as a sixth field. An attempt that stopped on an error or a signal (a
# command that failed, Ctrl-C) writes its own line with `failed (exit N)` as the sixth field. A finished step has
# OUT/S/table.md: its section's tables made from its outputs (results.json files, the benchmarks' output) by
# the existing table code (bin/compare's seed table with the 95% t-interval, rehearsal_table.py,
# lwcl.studies.*, each benchmark's own markdown) or docs/studies/run_tables.py and timed_rounds.py, then the
# provenance of its runs (commit, CPU, jax). OUT/results_tables.md puts them in docs/results.md's order, each
# under its section's title and CPU. Expect 18-26 hours on 2 quiet cores, most of it the depth study, the
# rehearsal table and gradient projection (each step's estimate, from docs/results.md's timings: --list).
# A study longer than a machine lives: OUT moves to another machine with the same CPU (family, model and
# instruction set) without its checkpoints (rsync -a --exclude=checkpoints OUT/ NEW/; the results.json files,
# the benchmarks' outputs, walltime.tsv and the DONE markers are what counts): finished steps are skipped,
# finished runs inside a step are reported from their results.json, unfinished ones start over.
#
# Nothing here needs a GPU: no section of docs/results.md is GPU-only. In "What to expect on accelerators" the
# step runs the CPU part (bin/bench roofline); bin/gpu-check's measured comparison needs a GPU or TPU and is
# not run.
#
# Sections not regenerated (tests/test_studies_all.py checks that every "## " section of docs/results.md is
# one step's or listed here):
#   not regenerated: The refactor of issue 28: every result unchanged -- its figures compare two commits'
#     outputs key by key (result_matrix.py run at the commit before and after a refactor, then compare;
#     masked_orders.py), so they exist only for a pair of commits; its commands are in the section
# Parts of regenerated sections that are not (history, another machine, or no command recorded):
#   partly: Gradient projection on GEM's protocol -- the AMD EPYC rows and issue 11's (other machines), the
#     AVX2-limited rerun (no command recorded); the push diagnostics run (lgd_push.json) but are prose
#   partly: Convolutions on CPU -- the tables of earlier code (2026-11-29, f6b6740, 0cc8812 before/after), the
#     per-convolution jax.jit profiles, the XLA flag sweeps and torch.profiler figures (no script recorded)
#   partly: Speed: lwcl's step against a PyTorch eager loop -- the progress-bar stalls (issue 9, code replaced)
#   partly: Fixed cost of a run -- the "before" row (commit 3c558f4), the profiles and compile counts
#   partly: Task orders and sweep candidates as replicas -- the "before issue 17" column; the 1 x 1 against
#     8 x 1 emulated-device timing (command not recorded; the equalities are tests, run by test_suite)
#   partly: Streaming source -- the reruns after rebasing (history)
#   partly: What to expect on accelerators -- bin/gpu-check's comparison (needs a GPU or TPU)
#   partly: Test suite -- earlier stops' timings (history) and the per-file JAX monitoring figures (no script);
#     the suite runs in this checkout, not a clean clone with a fresh .venv
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="$root/.venv/bin/python"
setup="bin/setup"
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1  # progress shows as it happens, in the step's log.txt too

STEPS=()
declare -A TITLE=() ESTIMATE=()
C_STEP=() C_KIND=() C_TEXT=()
step() { STEPS+=("$1"); TITLE[$1]="$2"; ESTIMATE[$1]="$3"; }
run() { C_STEP+=("${STEPS[-1]}"); C_KIND+=(run); C_TEXT+=("$1"); }
table() { C_STEP+=("${STEPS[-1]}"); C_KIND+=(table); C_TEXT+=("$1"); }

define_steps() {
  # Default experiment: seeds 0-2 one process each (their own train s), K=8, the GEM-protocol MLP at K=1, 32
  step default "Default experiment" "5 min"
  run 'for s in 0 1 2; do bin/run --config=configs/default.py --config.seed=$s --config.train.progress=False \
         --workdir=$D/seeds/default/seed$s; done'
  run 'bin/run --config=configs/default.py --config.train.steps_per_dispatch=8 --config.train.progress=False \
         --workdir=$D/k8'
  run 'bin/compare --out=$D/gem_k1 --set train.progress=false configs/gem_permuted_fashion_mnist.py:{finetune,agem}'
  run 'bin/compare --out=$D/gem_k32 --set train.progress=false --set train.steps_per_dispatch=32 \
         configs/gem_permuted_fashion_mnist.py:{finetune,agem}'
  table '$py docs/studies/run_tables.py seeds $D/seeds/default'
  table '$py docs/studies/run_tables.py runs "seed 0=$D/seeds/default/seed0" "seed 0 K8=$D/k8" "GEM MLP K1=$D/gem_k1" \
           "GEM MLP K32=$D/gem_k32"'

  step which_blocks_forget "Which blocks forget: continual learning inside layer-wise training" "1 h"
  run 'bin/compare --out=$D/cl_lw --set train.progress=false configs/cl_layerwise_fmnist.py:{finetune,ewc,nai,lgd}'
  table 'cat $D/cl_lw/comparison.md'
  table '$py docs/studies/run_tables.py runs $D/cl_lw'

  # the 10-seed rows: bin/compare --seeds=10 trains the same 10-replica program as the section's
  # python -m lwcl.main --config.num_seeds=10, and adds the paired GEM - LGD differences
  step gradient_projection \
    "Gradient projection on GEM's protocol: A-GEM, GEM and LGD over 3 seeds (issue 11, part 3)" "2 h 40 min"
  run 'docs/studies/gradient_projection.sh $D/gp'
  run 'bin/compare --seeds=10 --out=$D/ten_seeds_permuted --set train.progress=false \
         configs/gem_permuted_fashion_mnist.py:gem configs/lgd_permuted_fashion_mnist.py:authors'
  run 'bin/compare --seeds=10 --out=$D/ten_seeds_rotated --set train.progress=false \
         configs/gem_rotated_fashion_mnist.py:gem configs/lgd_rotated_fashion_mnist.py:authors'
  table 'for g in permuted_T10 rotated_T10 permuted_T20 rotated_T20 permuted_T20_lr001 ten_seeds_permuted \
           ten_seeds_rotated; do f=$D/gp/$g; [ -d $f ] || f=$D/$g; printf "**%s**\n\n" $g; \
           $py docs/studies/run_tables.py seeds $f; echo; done'
  table '$py docs/studies/run_tables.py runs "$D/gp/permuted_T20/gem_permuted_fashion_mnist_gem*/seed*"'
  table '$py docs/studies/run_tables.py sweep $D/gp/lrsel_permuted_T20_authors'

  # the 33 single runs (layerwise_depth_full.sh), the study's tables and curves, bin/compare's seed table
  # (read by run_tables.py: bin/compare would train a missing seed as a replica), the step memory. The current
  # code's model.conv_impl=auto takes oneDNN's convolutions where the published runs had XLA's (native)
  step layerwise_depth "Layer-wise training against depth at 15,000 examples (issue 15, part 5)" "5-8 h"
  run 'docs/studies/layerwise_depth_full.sh $D/runs'
  run 'n=$(find $D/runs -mindepth 3 -maxdepth 3 -path "*/seed*/results.json" | wc -l); [ $n = 33 ] || { echo \
         "all.sh: $n of the 33 depth runs finished (why not: $D/runs/progress.txt and each log.txt)" >&2; exit 1; }'
  run 'bin/bench layerwise \
         --config=configs/layerwise_fmnist_depth.py:resnet{20,32,56},{backprop,local,local+accelerated} \
         --config=configs/layerwise_fmnist_depth.py:resnet32,local+convs{1,3} --json=$D/step_memory.json \
         | tee $D/step_memory.log'
  table '$py -m lwcl.studies.layerwise_depth --out=$D/tables $D/runs > $D/tables.log \
           && cat $D/tables/layerwise_depth.md'
  table '$py docs/studies/run_tables.py seeds $D/runs'
  table '$py docs/studies/all_report.py log-tables $D/step_memory.log'

  step task_orders \
    "Task-order robustness: NAI against EWC, MAS, SI and fine-tuning (issue 11, part 5; 3 seeds, issue 17)" "11 min"
  run 'docs/studies/task_orders.sh $D/orders'
  table 'cat $D/orders/table/order_spread.md'
  table '$py docs/studies/run_tables.py sweep $D/orders/select_{nai,ewc,mas,si}'
  table 'printf "\n\`progress.txt\`: %s\n" "$(tail -n 1 $D/orders/progress.txt)"'

  step projection_cost "Speed: cost of the projection methods" "3 min (not recorded)"
  run 'bin/bench projection --old-tasks=1,5,19 --steps=20 --json=$D/projection.json | tee $D/projection.log'
  table '$py docs/studies/all_report.py log-tables $D/projection.log'

  step layerwise_memory "Memory of layer-wise training" "5 min (not recorded)"
  run 'bin/bench layerwise --json=$D/layerwise.json | tee $D/layerwise.log'
  table '$py docs/studies/all_report.py log-tables $D/layerwise.log'

  # what the current code can regenerate: bin/bench conv; the XLA flag on and off (two alternations); oneDNN on
  # and off (three alternations; the section gives the settings, not the command line); the plain process
  # (needs PyTorch: bin/bench vs-torch installs it); the default run's seeds with XLA's convolutions
  step convolutions "Convolutions on CPU: XLA flag, patch matmuls in loops, ResNet-20 (issue 15)" "20 min"
  run 'bin/bench conv --json=$D/conv.json | tee $D/conv.log'
  run 'b="bin/bench vs-torch --no-torch --settings=convnet,resnet20 --methods=finetune"; for i in 1 2; do \
         $b --json=$D/flag_on$i.json | tee $D/flag_on$i.log; \
         LWCL_XLA_CPU_FLAGS=0 $b --json=$D/flag_off$i.json | tee $D/flag_off$i.log; done'
  run 'b="bin/bench vs-torch --rounds=5 --steps=10 --settings=convnet,resnet20 --methods=finetune,ewc"; \
         for i in 1 2 3; do $b --json=$D/onednn_on$i.json | tee $D/onednn_on$i.log; \
         LWCL_ONEDNN=0 $b --json=$D/onednn_off$i.json | tee $D/onednn_off$i.log; done'
  run ': > $D/plain_on.log; : > $D/plain_off.log; \
         for i in 1 2 3; do $py docs/studies/plain_process_step.py | tee -a $D/plain_on.log; done; \
         for i in 1 2; do LWCL_ONEDNN=0 $py docs/studies/plain_process_step.py | tee -a $D/plain_off.log; done'
  run 'for s in 0 1 2; do LWCL_ONEDNN=0 bin/run --config=configs/default.py --config.seed=$s \
         --config.train.progress=False --workdir=$D/xla_conv/default/seed$s; done'
  table '$py docs/studies/all_report.py log-tables $D/conv.log $D/flag_on1.log $D/flag_off1.log $D/flag_on2.log \
           $D/flag_off2.log'
  table '$py docs/studies/all_report.py log-tables $D/onednn_on1.log $D/onednn_off1.log $D/onednn_on2.log \
           $D/onednn_off2.log $D/onednn_on3.log $D/onednn_off3.log'
  table '$py docs/studies/all_report.py log-text $D/plain_on.log $D/plain_off.log'
  table '$py docs/studies/run_tables.py seeds "default run, LWCL_ONEDNN off=$D/xla_conv/default"'

  # the table, and the kernel time of a short default run with glibc's malloc and tcmalloc (3 alternations)
  step vs_torch "Speed: lwcl's step against a PyTorch eager loop" "5 min"
  run 'bin/bench vs-torch --rounds=5 --steps=10 --steps-per-dispatch=1,8 \
         --settings=convnet,resnet20,resnet20-local,mlp,rehearsal,rehearsal-b64 --json=$D/vs_torch.json | tee $D/vs_torch.log'
  run 'm="$py -m lwcl.main --config=configs/default.py --config.scenario.samples_per_task=3200 \
         --config.train.progress=False --workdir={workdir}"; \
       $py docs/studies/timed_rounds.py run $D/kernel_time --rounds=3 "glibc=LD_PRELOAD= $m" \
         "tcmalloc=LD_PRELOAD=$tcmalloc $m"'
  table '$py docs/studies/all_report.py log-tables $D/vs_torch.log'
  table '$py docs/studies/timed_rounds.py table $D/kernel_time --ratio=tcmalloc/glibc'

  # three interleaved rounds of: an empty compilation cache, then the same command on the cache it filled
  step fixed_cost "Fixed cost of a run (issue 17)" "2 min"
  run 'm="LD_PRELOAD=$tcmalloc $py -m lwcl.main --config=configs/nai_split_fashion_mnist.py --workdir={workdir} \
         --config.train.progress=False"; \
       $py docs/studies/timed_rounds.py run $D/rounds --rounds=3 \
         "cold_cache=rm -rf {round}/cache && LWCL_CACHE_DIR={round}/cache $m" \
         "warm_cache=LWCL_CACHE_DIR={round}/cache $m"'
  table '$py docs/studies/timed_rounds.py table $D/rounds --ratio=warm_cache/cold_cache'

  step replicas "Task orders and sweep candidates as replicas of one program (issue 17)" "8 min"
  run 'm="$py -m lwcl.main --config=configs/nai_split_fashion_mnist.py --workdir={workdir} \
         --config.train.progress=False"; \
       $py docs/studies/timed_rounds.py run $D/rounds --rounds=3 "one_order=$m" "ten_orders=$m --config.num_orders=10" \
         "sweep_1=$m --config.sweep.key=method.strength --config.sweep.candidates=\(1.,\)" \
         "sweep_5=$m --config.sweep.key=method.strength --config.sweep.candidates=\(0.01,0.1,1.,10.,100.\)"'
  run 'for m in finetune nai; do bin/bench replica-step --method=$m --json=$D/replica_step_$m.json \
         | tee $D/replica_step_$m.log; done'
  table '$py docs/studies/timed_rounds.py table $D/rounds --ratio=ten_orders/one_order --ratio=sweep_5/sweep_1'
  table '$py docs/studies/all_report.py log-text $D/replica_step_finetune.log $D/replica_step_nai.log'

  # the 10x set (406 MB in $D/fm10), the four runs' peak RSS and wall time, the input pipeline's four rows
  step streaming "Streaming source: peak memory and input-pipeline throughput (issue 18)" "10 min"
  run '[ -f $D/fm10.done ] || { rm -rf $D/fm10 && bin/bench stream write --out=$D/fm10 --copies=10 \
         && touch $D/fm10.done; }'
  run 'm="$py -m lwcl.main --config=configs/default.py --workdir={workdir} --config.model.name=mlp \
         --config.train.epochs_per_task=1 --config.train.progress=False"; \
       $py docs/studies/timed_rounds.py run $D/memory --rounds=1 \
         "in_memory_2000=$m --config.scenario.samples_per_task=2000" \
         "streamed_2000=$m --config.scenario.samples_per_task=2000 --config.data.record_dir=$D/fm10" \
         "in_memory_all=$m" "streamed_all=$m --config.data.record_dir=$D/fm10"'
  run 'bin/bench stream throughput --record_dir=$D/fm10 --batches=300 | tee $D/mlp_64_threads2.log'
  run 'bin/bench stream throughput --record_dir=$D/fm10 --batches=300 --threads=1 | tee $D/mlp_64_threads1.log'
  run 'bin/bench stream throughput --record_dir=$D/fm10 --batches=300 --set train.batch_size=256 \
         | tee $D/mlp_256_threads2.log'
  run 'bin/bench stream throughput --record_dir=$D/fm10 --batches=200 --set model.name=convnet \
         | tee $D/convnet_64_threads2.log'
  table '$py docs/studies/timed_rounds.py table $D/memory'
  table '$py docs/studies/all_report.py json-rows $D/mlp_64_threads2.log $D/mlp_64_threads1.log \
           $D/mlp_256_threads2.log $D/convnet_64_threads2.log'

  step rehearsal_small "Rehearsal baselines (issue 29): a first check at small scale" "3 min"
  run 'for s in 0 1 2; do $py docs/studies/rehearsal_small.py $D/runs $s; done'
  table '$py docs/studies/run_tables.py seeds --old-tasks "fine-tuning=$D/runs/finetune_seed*" "LwF=$D/runs/lwf_seed*" \
           "ER=$D/runs/er_seed*" "DER=$D/runs/der_seed*" "DER++=$D/runs/derpp_seed*"'

  # 5 seeds for every row (the 5-seed table: 71-426 s each, DER, A-GEM, GEM and LGD 1,400-4,800 s), then seeds
  # 5-9 of the rows that spread (2026-12-06, 10 seeds in one program: DER++ 639 s, DER 2,541, A-GEM 2,367, GEM
  # 5,539, LGD 5,461 at memory 500; 5 added seeds cost about half); then the same configs task-incremental
  # (one head per task; not run yet: about as long again)
  step rehearsal_table \
    "Rehearsal baselines, class-incremental Split Fashion-MNIST (issue 29): the table, in progress" "13-17 h"
  run 'docs/studies/rehearsal_table.sh $D/runs'
  run 'docs/studies/rehearsal_table.sh $D/runs task'
  table '$py docs/studies/rehearsal_table.py $D/runs'

  step roofline "What to expect on accelerators (issue 30, item 6)" "7 min"
  run 'bin/bench roofline --json=$D/roofline.json | tee $D/roofline.log'
  table '$py docs/studies/all_report.py log-tables $D/roofline.log'

  # seeds 0-5 one process each per dtype (timed: CPU seconds), the float32 seeds as 3 replicas, the step
  # times, GEM's solver report in bfloat16
  step mixed_precision "Mixed precision (bfloat16) on CPU (issue 30, item 3)" "20 min"
  run 'a=(); for s in 0 1 2 3 4 5; do for dt in float32 bfloat16; do a+=("${dt}_seed$s=$py -m lwcl.main \
         --config=configs/default.py --config.seed=$s --config.model.dtype=$dt --config.train.progress=False \
         --workdir={workdir}"); done; done; $py docs/studies/timed_rounds.py run $D/runs --rounds=1 "${a[@]}"'
  run '$py -m lwcl.main --config=configs/default.py --config.num_seeds=3 --config.seed=0 --config.train.progress=False \
         --workdir=$D/replicas_float32'
  run 'PYTHONPATH=. $py docs/studies/mixed_precision_step.py --steps=20 --rounds=3 --json=$D/step.json \
         | tee $D/step.log'
  run 'for dt in float32 bfloat16; do $py -m lwcl.main --config=configs/gem_permuted_fashion_mnist.py:gem \
         --config.scenario.num_tasks=10 --config.seed=0 --config.model.dtype=$dt --config.train.progress=False \
         --workdir=$D/gem10_$dt; done'
  table '$py docs/studies/run_tables.py seeds "float32=$D/runs/round1/float32_seed*/run" \
           "bfloat16=$D/runs/round1/bfloat16_seed*/run" "float32, 3 replicas=$D/replicas_float32"'
  table '$py docs/studies/timed_rounds.py table $D/runs'
  table '$py docs/studies/all_report.py log-text $D/step.log'
  table '$py docs/studies/run_tables.py runs "GEM 10 tasks float32=$D/gem10_float32" \
           "GEM 10 tasks bfloat16=$D/gem10_bfloat16"'

  # the suite as CI runs it (bin/test = .ci/run), with durations; a failing test is a result, not a failed step
  step test_suite "Test suite" "15-35 min"
  run '$py docs/studies/timed_rounds.py run $D/suite --rounds=1 --allow-failure \
         "suite=CI=true bin/test -q --durations=150"'
  table '$py docs/studies/timed_rounds.py table $D/suite --last-line'
}

# For tests: LWCL_ALL_STEPS_FILE is sourced instead of define_steps (it may also set py and setup).
if [ -n "${LWCL_ALL_STEPS_FILE:-}" ]; then
  . "$LWCL_ALL_STEPS_FILE"
else
  define_steps
fi

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --list: the steps, each with its section's title, estimate and commands ($D shown as OUT/<step>), then the
# sections and parts not regenerated (this header's lines)
list_steps() {
  local s i text
  for s in "${STEPS[@]}"; do
    printf '%s\t%s\t%s\n' "$s" "${TITLE[$s]}" "${ESTIMATE[$s]}"
    for i in "${!C_STEP[@]}"; do
      [ "${C_STEP[$i]}" = "$s" ] || continue
      text="$(printf '%s' "${C_TEXT[$i]}" | sed -z 's/[[:space:]]*\\\n[[:space:]]*/ /g')"  # continued lines joined
      text="${text//\$D/OUT/$s}"
      text="${text//\$tcmalloc/$tcmalloc}"
      printf '  %-6s %s\n' "${C_KIND[$i]}:" "${text//\$py/.venv/bin/python}"
    done
  done
  sed -n '/^# Sections not regenerated/,/^set -euo/p' "$0" \
    | sed -n 's/^#   \(not regenerated\|partly\): \(.*\) -- .*/\1\t\2/p'
}

commit() {
  local c
  c=$(git -C "$root" rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then c="$c-dirty"; fi
  printf '%s' "$c"
}

# One command list of a step (run or table), each evaluated in a subshell with $D set, stopping at a failure.
eval_commands() {
  local s=$1 kind=$2 i
  for i in "${!C_STEP[@]}"; do
    if [ "${C_STEP[$i]}" = "$s" ] && [ "${C_KIND[$i]}" = "$kind" ]; then
      [ "$kind" = run ] && printf 'all.sh: + %s\n' "${C_TEXT[$i]}"
      ( set -euo pipefail; eval "${C_TEXT[$i]}" )
      [ "$kind" = table ] && echo
    fi
  done
  return 0
}

make_table() {
  local s=$1
  D="$OUT/$s"
  { eval_commands "$s" table; "$py" docs/studies/all_report.py provenance "$D"; } > "$D/table.md.tmp"
  mv "$D/table.md.tmp" "$D/table.md"
}

current="" started=0 started_iso="" heartbeat=""
record_walltime() {  # [note]: the sixth field (an attempt that did not finish)
  [ -n "$current" ] || return 0
  [ -z "$heartbeat" ] || kill "$heartbeat" 2>/dev/null || true
  printf '%s\t%s\t%s\t%s\t%s%s\n' "$current" "$started_iso" "$(date -u +%FT%TZ)" "$(( $(date +%s) - started ))" \
    "$(commit)" "${1:+$'\t'$1}" >> "$OUT/walltime.tsv"
  rm -f "$OUT/$current/attempt.txt"
  current="" heartbeat=""
}

# A step's attempt.txt (start epoch, start time, commit) left by an attempt that was SIGKILLed: its line, with
# the file's last touch (the attempt's last heartbeat) as its end and `killed` as the note
record_killed() {
  local s=$1 f="$OUT/$1/attempt.txt" start iso c end
  [ -f "$f" ] || return 0
  IFS=$'\t' read -r start iso c < "$f" || true
  if ! [[ "$start" =~ ^[0-9]+$ ]]; then  # killed while writing it: nothing to count
    rm -f "$f"
    echo "all.sh: $s: an unreadable attempt.txt (an attempt killed as it started) removed, not counted"
    return 0
  fi
  end=$(stat -c %Y "$f")
  printf '%s\t%s\t%s\t%s\t%s\tkilled\n' "$s" "$iso" "$(date -u -d "@$end" +%FT%TZ)" "$(( end - start ))" "$c" \
    >> "$OUT/walltime.tsv"
  rm -f "$f"
  echo "all.sh: $s: an attempt started $iso was killed; its $(( end - start )) s to its last heartbeat recorded"
}

run_step() {
  local s=$1
  D="$OUT/$s"
  if [ -f "$D/DONE" ]; then
    echo "all.sh: $s: finished before ($D/DONE), skipped"
    return 0
  fi
  mkdir -p "$D"
  printf '%s\n' "${TITLE[$s]}" > "$D/title.txt"
  current=$s started=$(date +%s) started_iso=$(date -u +%FT%TZ)
  printf '%s\t%s\t%s\n' "$started" "$started_iso" "$(commit)" > "$D/attempt.txt"
  ( while sleep "${LWCL_ALL_HEARTBEAT:-30}" && kill -0 $$ 2>/dev/null; do touch -c "$D/attempt.txt"; done ) \
    > /dev/null 2>&1 &
  heartbeat=$!
  echo "all.sh: $s (\"${TITLE[$s]}\", about ${ESTIMATE[$s]}): started $started_iso"
  "$py" docs/studies/all_report.py provenance-now "$D/provenance.json"
  eval_commands "$s" run 2>&1 | tee -a "$D/log.txt"
  make_table "$s"
  record_walltime
  touch "$D/DONE"
  echo "all.sh: $s: finished; its tables: $D/table.md"
}

case "${1:-}" in
  --list) list_steps; exit 0 ;;
  -h|--help|"") usage ;;
  --tables) mode=tables; shift ;;
  -*) usage ;;
  *) mode=run ;;
esac
[ $# -ge 1 ] || usage
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
shift
chosen=("$@")
for s in "${chosen[@]}"; do
  [ -n "${TITLE[$s]+x}" ] || { echo "all.sh: no step '$s'; the steps: ${STEPS[*]}" >&2; exit 2; }
done
[ ${#chosen[@]} -gt 0 ] || chosen=("${STEPS[@]}")
cd "$root"

if [ "$mode" = tables ]; then
  for s in "${chosen[@]}"; do
    if [ -f "$OUT/$s/DONE" ]; then make_table "$s"; echo "all.sh: $s: $OUT/$s/table.md"; fi
  done
else
  trap 'record_walltime "failed (exit $?)"' EXIT  # a step still current here did not finish
  trap 'exit 130' INT
  trap 'exit 143' TERM
  for s in "${STEPS[@]}"; do record_killed "$s"; done
  $setup
  for s in "${STEPS[@]}"; do  # in the fixed order; run_step outside any && or ||, so that set -e holds in it
    if [[ " ${chosen[*]} " == *" $s "* ]]; then
      run_step "$s"
    fi
  done
fi
"$py" docs/studies/all_report.py concat "$OUT"
"$py" docs/studies/all_report.py walltime "$OUT"
