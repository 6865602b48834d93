#!/usr/bin/env bash
# Issue 29 (docs/results.md, "Rehearsal baselines, class-incremental Split Fashion-MNIST"): every method of
# configs/rehearsal_split_fashion_mnist.py (Mammoth's seq-mnist protocol on Fashion-MNIST, 5 tasks of 2
# classes, one 10-way head, the default ConvNet), memory 500 for every method that keeps one, then 200 for the
# rehearsal and episodic-memory methods. Seeds as replicas of one program per row: 10 seeds (0-9) for the rows
# whose Class-IL ACC spread by more than 3 points over seeds 0-4 in the first, 5-seed table (our rule: 10
# seeds where seeds spread by more than 3 points; rehearsal_table.py --wide lists such rows), 5 seeds (0-4)
# for the others. A 5-seed row that spreads by more than 3 points is named at the end (it then needs 10
# seeds: bin/compare --seeds=10 into a new folder, since a folder's summary holds one seed count). Resumable:
# rerun the same command after an interruption (finished rows are reported; an unfinished run resumes from its
# checkpoint). Outputs under OUT (default runs/rehearsal); the table of docs/results.md:
# .venv/bin/python docs/studies/rehearsal_table.py OUT. The results.json files of the runs behind
# docs/results.md's table (each config's and each seed's) are kept in docs/studies/rehearsal_runs (same layout as
# OUT, without checkpoints and figures); copied into an empty OUT, they count as finished and are not rerun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${1:-runs/rehearsal}"
bin/setup
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
c=configs/rehearsal_split_fashion_mnist.py
compare() { $py -m lwcl.cli.compare --out="$out/$1" --set train.progress=false "${@:2}"; }
compare class_500 --seeds=5 $c:{finetune,er,lwf,icarl,ewc,si,nai,joint,lgd_authors}
compare class_500 --seeds=10 $c:{derpp,der,agem,gem,lgd}
compare class_200 --seeds=5 $c:{icarl,lgd,lgd_authors}-200
compare class_200 --seeds=10 $c:{er,derpp,der,agem,gem}-200
wide="$($py docs/studies/rehearsal_table.py --wide "$out")"
[ -z "$wide" ] || echo "rehearsal_table.sh: 5-seed rows spreading by more than 3 points (10 seeds needed):" $wide
