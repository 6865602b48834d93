#!/usr/bin/env bash
# Issue 29 (docs/results.md, "Rehearsal baselines, class-incremental Split Fashion-MNIST"): every method of
# configs/rehearsal_split_fashion_mnist.py (Mammoth's seq-mnist protocol on Fashion-MNIST, 5 tasks of 2
# classes, one 10-way head, the default ConvNet), memory 500 for every method that keeps one, then 200 for the
# rehearsal and episodic-memory methods; seeds 0-4 as 5 replicas of one program per row, then seeds 5-9 for
# every row whose Class-IL ACC spreads by more than 3 points over seeds 0-4 (our rule: 10 seeds where seeds
# spread by more than 3 points; rehearsal_table.py --wide lists those rows, and bin/compare --seeds=10 trains
# their seeds 5-9 alone, in OUT/<group>/<row>/seeds5-9/, and writes the summary of the 10). Resumable: rerun
# the same command after an interruption (finished seeds are reported; an unfinished run resumes from its
# checkpoint). Outputs under OUT (default runs/rehearsal); the table of docs/results.md:
# .venv/bin/python docs/studies/rehearsal_table.py OUT. The results.json files of the runs behind
# docs/results.md's table (each config's and each seed's) are kept in docs/studies/rehearsal_runs (same layout as
# OUT, without checkpoints and figures); copied into an empty OUT, their seeds count as finished.
#   docs/studies/rehearsal_table.sh OUT task   the same study task-incremental (one head per task, --set
#                                              scenario.incremental=task) in OUT/task_500, OUT/task_200
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${1:-runs/rehearsal}"
scenario="${2:-class}"
case "$scenario" in
  class) extra=() ;;
  task) extra=(--set scenario.incremental=task) ;;
  *) echo "error: scenario '$scenario' is not class or task; docs/studies/rehearsal_table.sh OUT [class|task]" >&2
     exit 2 ;;
esac
bin/setup
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
c=configs/rehearsal_split_fashion_mnist.py
compare() { $py -m lwcl.cli.compare --out="$out/$1" --set train.progress=false ${extra[@]+"${extra[@]}"} "${@:2}"; }
compare ${scenario}_500 --seeds=5 $c:{finetune,er,derpp,der,lwf,agem,icarl,ewc,si,nai,gem,lgd,joint,lgd_authors}
compare ${scenario}_200 --seeds=5 $c:{er,derpp,der,agem,icarl,gem,lgd,lgd_authors}-200
{ $py docs/studies/rehearsal_table.py --wide "$out" | grep "^${scenario}_" || true; } | while read -r group argument; do
  compare "$group" --seeds=10 "$c:$argument" < /dev/null
done
