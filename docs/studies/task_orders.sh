#!/usr/bin/env bash
# Part 5 of issue 11: strengths selected on the validation split (stream as defined), then 10 distinct task orders.
# The sweeps' candidates and the 10 orders each train as replicas of one vmapped program (issue 17).
#   docs/studies/task_orders.sh      (one command; the total wall time is the last line of progress.txt)
set -euo pipefail
study_start=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin/setup
mkdir -p runs/study_orders
export TF_CPP_MIN_LOG_LEVEL=2
cfg=configs/nai_split_fashion_mnist.py
py=.venv/bin/python
log=runs/study_orders/progress.txt
declare -A grid=([nai]="(0.01,0.1,1.,10.,100.)" [ewc]="(1e2,1e3,1e4,1e5,1e6,1e7,1e8)" [mas]="(0.1,1.,10.,100.,1000.)" [si]="(0.1,1.,10.,100.,1000.)")
for m in nai ewc mas si; do
  start=$(date +%s)
  $py -m lwcl.main --config=$cfg --workdir=runs/study_orders/select_$m --config.method.name=$m \
    --config.sweep.key=method.strength --config.sweep.candidates="${grid[$m]}" --config.train.progress=False \
    > runs/study_orders/select_$m.log 2>&1
  echo "$(date +%T) select $m rc=$? $(( $(date +%s) - start ))s" >> $log
done
for m in finetune nai ewc mas si; do
  strength=1.0
  if [ $m != finetune ]; then
    strength=$($py -c "import json;print(json.load(open('runs/study_orders/select_$m/results.json'))['selected'])")
  fi
  start=$(date +%s)
  $py -m lwcl.main --config=$cfg --workdir=runs/study_orders/orders_$m --config.method.name=$m \
    --config.method.strength=$strength --config.num_orders=10 --config.train.progress=False \
    > runs/study_orders/orders_$m.log 2>&1
  echo "$(date +%T) orders $m strength=$strength rc=$? $(( $(date +%s) - start ))s" >> $log
done
$py -m lwcl.studies.order_spread --out=runs/study_orders/table runs/study_orders/orders_{nai,finetune,ewc,mas,si}
echo "$(date +%T) total wall time $(( $(date +%s) - study_start ))s on $(lscpu | sed -n 's/^Model name: *//p')" >> $log
