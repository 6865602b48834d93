#!/usr/bin/env bash
# Issue 29 (docs/results.md, "Rehearsal baselines, class-incremental Split Fashion-MNIST"): every method of
# configs/rehearsal_split_fashion_mnist.py (Mammoth's seq-mnist protocol on Fashion-MNIST, 5 tasks of 2
# classes, one 10-way head, the default ConvNet) over seeds 0-9 as 10 replicas of one program (bin/compare
# --seeds=10: half the rows spread by more than 3 points of ACC over 5 seeds, where our rule asks for 10),
# memory 500 for every method that keeps one, then 200 for the rehearsal and episodic-memory methods. Resumable: rerun the same command after an interruption (finished seeds are reused, an
# unfinished run resumes from its checkpoint). Outputs under OUT (default runs/rehearsal); the table of
# docs/results.md: .venv/bin/python docs/studies/rehearsal_table.py OUT. The results.json files of the runs behind
# docs/results.md's table (each config's and each seed's) are kept in docs/studies/rehearsal_runs (same layout as
# OUT, without checkpoints and figures); copied into an empty OUT, their seeds count as finished and are not
# rerun (bin/compare trains the seeds missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${1:-runs/rehearsal}"
bin/setup
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
c=configs/rehearsal_split_fashion_mnist.py
$py -m lwcl.cli.compare --seeds=10 --out="$out/class_500" --set train.progress=false \
  $c:{finetune,er,derpp,der,lwf,agem,icarl,ewc,si,nai,gem,lgd,joint,lgd_authors}
$py -m lwcl.cli.compare --seeds=10 --out="$out/class_200" --set train.progress=false \
  $c:{er,derpp,der,agem,icarl,gem,lgd,lgd_authors}-200
