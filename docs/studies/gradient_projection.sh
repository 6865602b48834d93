#!/usr/bin/env bash
# Issue 11, part 3 (docs/results.md, "Gradient projection on GEM's protocol"): finetune, A-GEM, GEM (margin 0.5
# and 0), LGD (equation, authors, authors with mean push) on permuted and rotated Fashion-MNIST, 10 and 20
# tasks, seeds 0-2 (bin/compare --seeds=3: the seeds as replicas of one program; seeds already finished in
# OUT/<name>/seed<s>/ by single runs are reused), then the push diagnostics and the validation-selected
# learning rate for LGD authors at 20 tasks.
#   docs/studies/gradient_projection.sh [OUT]      (default OUT=runs/study_gp; rerun after an interruption:
#                                                  finished runs are reported, the others resume)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${1:-runs/study_gp}"
bin/setup
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
for T in 10 20; do for kind in permuted rotated; do
  $py -m lwcl.cli.compare --seeds=3 --out="$out/${kind}_T$T" --set scenario.num_tasks=$T --set eval.lca_batches=10 \
    --set train.progress=false configs/gem_${kind}_fashion_mnist.py:{finetune,agem,gem,gem_m0} \
    configs/lgd_${kind}_fashion_mnist.py:{equation,authors,authors_mean}
done; done
# the push diagnostics record every task's start as the run goes: an interrupted one starts over, a finished one
# (lgd_push.json) is kept
for kind in permuted rotated; do
  push="$out/push_${kind}_T20"
  [ -f "$push/lgd_push.json" ] && continue
  rm -rf "$push/run"
  $py -m lwcl.studies.lgd_push --config=configs/lgd_${kind}_fashion_mnist.py:authors --tasks=20 --seed=0 --out="$push"
done
$py -m lwcl.main --config=configs/lgd_permuted_fashion_mnist.py:authors --workdir="$out/lrsel_permuted_T20_authors" \
  --config.scenario.num_tasks=20 --config.scenario.validation_fraction=0.1 --config.eval.lca_batches=10 \
  --config.sweep.key=optimizer.learning_rate --config.sweep.candidates="(0.01,0.03,0.1)" --config.train.progress=False
$py -m lwcl.cli.compare --seeds=3 --out="$out/permuted_T20_lr001" --set scenario.num_tasks=20 --set eval.lca_batches=10 \
  --set train.progress=false --set optimizer.learning_rate=0.01 configs/lgd_permuted_fashion_mnist.py:authors
