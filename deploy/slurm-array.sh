#!/usr/bin/env bash
# A Slurm array over the pieces of one stage; the merge runs after every task succeeded:
#
#   jid=$(sbatch --parsable --array=0-15 --export=ALL,STAGE=render@single deploy/slurm-array.sh)
#   sbatch --dependency=afterok:$jid --wrap "cd $PWD && dvc repro render@single"
#
# The project folder (with .venv, data/, models/) must be on a file system every node mounts; submit from it.
# For a finetune stage ask for a GPU, e.g. --gres=gpu:1 and STAGE=finetune_single@single-resnet9-rotation-pose.
#SBATCH --job-name=selfsup-shard
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=selfsup-shard-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
export PATH="$PWD/.venv/bin:$PATH"
: "${STAGE:?set STAGE, e.g. sbatch --export=ALL,STAGE=render@single ...}"
exec deploy/shard.sh "$STAGE" "$SLURM_ARRAY_TASK_ID" "$SLURM_ARRAY_TASK_COUNT"
