#!/usr/bin/env bash
# Run job INDEX of COUNT of one dvc stage's work, as an independent job (a Slurm array task, a Kubernetes
# indexed Job pod, or just a shell on another machine). Run it in the project folder, on a file system
# every job shares. Works for render@DATA (render shards) and finetune_*@... (budget × seed cells).
#
#   deploy/shard.sh STAGE INDEX COUNT      e.g.  deploy/shard.sh render@single 3 16
#
# The stage's exact command comes from `dvc repro --dry` (so it always matches params.yaml and dvc.yaml),
# with `--shard INDEX/COUNT` added. When every job has finished, one `dvc repro STAGE` merges the pieces
# (it renders or trains nothing that is already there) and records the stage in dvc.lock.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: deploy/shard.sh STAGE INDEX COUNT" >&2
  exit 2
fi
stage=$1 index=$2 count=$3
case "$stage" in
  render@*|finetune_*@*) ;;
  *) echo "error: stage '$stage' cannot be split: use render@NAME or finetune_SET@..." >&2; exit 2 ;;
esac
cmd=$(dvc repro --dry --single-item "$stage" | sed -n 's/^> //p')
if [ -z "$cmd" ]; then
  echo "$stage is up to date (or its inputs are missing: dvc repro --dry --single-item $stage says why)"
  exit 0
fi
cmd=${cmd/ --replace/}  # one job must never delete the others' shards
echo "job $index/$count: $cmd --shard $index/$count"
eval "$cmd --shard $index/$count"
