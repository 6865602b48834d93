#!/usr/bin/env bash
# Issue 15, part 5: the layer-wise depth study at the asked scale (configs/layerwise_fmnist_depth.py: 15,000
# Fashion-MNIST examples, 12 epochs), seeds 0-2, each seed a single run (on CPU, vmapped replicas of a
# convolutional network run far slower than one run after another: XLA:CPU's batched convolutions).
#   docs/studies/layerwise_depth_full.sh [OUT]      (default OUT=runs/study_depth_full)
# Layout OUT/<name>/seed<s> as bin/compare --seeds writes it, so the table is
#   bin/compare --seeds=3 --out=OUT configs/layerwise_fmnist_depth.py:resnet{20,32,56},{backprop,local,local+accelerated} ...
# which finds every seed finished and only reports. Interrupted runs resume from their checkpoints (every 100
# steps) when the script is started again; finished runs are skipped. Order: the ResNet-56 rows first (all
# seeds), then ResNet-20, then ResNet-32 with the convolution-intensity variants.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin/setup
. bin/_allocator.sh
out="${1:-runs/study_depth_full}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
log="$out/progress.txt"
specs=()
for d in 56 20 32; do
  variants="backprop local local+accelerated"
  [ "$d" = 32 ] && variants="$variants local+convs1 local+convs3"
  for s in 0 1 2; do for v in $variants; do specs+=("resnet$d,$v@$s"); done; done
done
for item in "${specs[@]}"; do
  arg="${item%@*}"; s="${item#*@}"
  spec="configs/layerwise_fmnist_depth.py:$arg"
  name=$($py -c "from lwcl.cli.compare import run_name; print(run_name('$spec'))")
  wd="$out/$name/seed$s"
  [ -f "$wd/results.json" ] && continue
  mkdir -p "$wd"
  start=$(date +%s)
  rc=0
  /usr/bin/time -a -f "%M" -o "$wd/maxrss_kib.txt" $py -m lwcl.main --config="$spec" --workdir="$wd" \
    --config.seed="$s" --config.train.progress=False >> "$wd/log.txt" 2>&1 || rc=$?
  echo "$(date -u +%FT%TZ) $wd rc=$rc $(( $(date +%s) - start ))s" >> "$log"
done
