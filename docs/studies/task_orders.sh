#!/usr/bin/env bash
# Part 5 of issue 11, at 3 seeds (issue 17): each method's strength selected on the validation split of the
# stream as defined (every candidate over seeds 0-2, selected on the mean), then 10 distinct task orders x
# the same 3 seeds. Each sweep and each method's 10 x 3 runs train as replicas of one vmapped program.
#   docs/studies/task_orders.sh [OUT]   (default OUT=runs/study_orders; one command; the total wall time and
#                                        the CPU model are the last line of OUT/progress.txt)
# Finished runs are reported, not rerun; interrupted ones resume from their checkpoints.
set -euo pipefail
study_start=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin/setup
out="${1:-runs/study_orders}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
cfg=configs/nai_split_fashion_mnist.py
py=.venv/bin/python
log="$out/progress.txt"
seeds=3
declare -A grid=([nai]="(0.01,0.1,1.,10.,100.)" [ewc]="(1e2,1e3,1e4,1e5,1e6,1e7,1e8)" [mas]="(0.1,1.,10.,100.,1000.)" [si]="(0.1,1.,10.,100.,1000.)")
for m in nai ewc mas si; do
  start=$(date +%s)
  rc=0
  $py -m lwcl.main --config=$cfg --workdir="$out/select_$m" --config.method.name=$m --config.num_seeds=$seeds \
    --config.sweep.key=method.strength --config.sweep.candidates="${grid[$m]}" --config.train.progress=False \
    > "$out/select_$m.log" 2>&1 || rc=$?
  echo "$(date +%T) select $m rc=$rc $(( $(date +%s) - start ))s" >> "$log"
  [ $rc = 0 ] || exit $rc
done
for m in finetune nai ewc mas si; do
  strength=1.0
  if [ $m != finetune ]; then
    strength=$($py -c "import json;print(json.load(open('$out/select_$m/results.json'))['selected'])")
  fi
  start=$(date +%s)
  rc=0
  $py -m lwcl.main --config=$cfg --workdir="$out/orders_$m" --config.method.name=$m --config.num_seeds=$seeds \
    --config.method.strength=$strength --config.num_orders=10 --config.train.progress=False \
    > "$out/orders_$m.log" 2>&1 || rc=$?
  echo "$(date +%T) orders $m strength=$strength rc=$rc $(( $(date +%s) - start ))s" >> "$log"
  [ $rc = 0 ] || exit $rc
done
$py -m lwcl.studies.order_spread --out="$out/table" "$out"/orders_{nai,finetune,ewc,mas,si}
echo "$(date +%T) total wall time $(( $(date +%s) - study_start ))s on $(lscpu | sed -n 's/^Model name: *//p')" >> "$log"
