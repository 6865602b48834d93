#!/usr/bin/env bash
# Part 4 of issue 11 (reduced): ResNet-20 and -32 on Fashion-MNIST (configs/layerwise_fmnist.py: 3000 examples,
# 6 epochs), backprop / local / local+accelerated, seeds 0-2, layout OUT/<name>/seed<s> (as bin/compare --seeds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin/setup
mkdir -p runs/study_depth
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
log=runs/study_depth/progress.txt
for d in 20 32; do for s in 0 1 2; do for v in backprop local local+accelerated; do
  spec=configs/layerwise_fmnist.py:resnet$d,$v
  name=$($py -c "from lwcl.compare import run_name; print(run_name('$spec'))")
  wd=runs/study_depth/$name/seed$s
  [ -f "$wd/results.json" ] && continue
  mkdir -p $wd
  start=$(date +%s)
  /usr/bin/time -f "%M" -o $wd/maxrss_kib.txt $py -m lwcl.main --config=$spec --workdir=$wd --config.seed=$s \
    --config.train.progress=False > $wd/log.txt 2>&1
  echo "$(date +%T) $wd rc=$? $(( $(date +%s) - start ))s" >> $log
done; done; done
