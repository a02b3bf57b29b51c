#!/usr/bin/env bash
# Fine-tune LinkBERT-large on the eight GLUE tasks the paper averages, with the paper's protocol:
# max_seq_length 128 and a sweep over learning rate, batch size and epochs, the configuration
# with the best dev score kept (src/linkbert/sweep.py says which grid and why).
#
#   bash run_examples_glue_linkbert-large.sh               # every task, its configurations one after another
#   bash run_examples_glue_linkbert-large.sh rte stsb      # only these tasks
#   bash run_examples_glue_linkbert-large.sh --dry-run     # print one command per configuration
#   CUDA_VISIBLE_DEVICES=1 bash run_examples_glue_linkbert-large.sh qqp &   # one GPU per task
#
# Data: data/seqcls/glue/<task>/ (python scripts/preprocess_glue.py --raw_dir glue_data --out_dir data).
# Output: runs/glue/<task>/$MODEL/<configuration>/ (log.txt, eval_results.json, <TASK>.tsv, ...) and
# runs/glue/<task>/$MODEL/sweep_results.json (every configuration's dev score, the chosen one), with
# the chosen run's GLUE submission file beside it. A rerun skips finished configurations.
# Then: python scripts/collect_results.py runs/
# Edit a block's grid (--learning_rates, --batch_sizes, --epochs) or the flags after its --.

MODEL=${MODEL:-LinkBERT-large}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/glue_sweep_lib.sh" "$@"

GRID=(--learning_rates 5e-6 1e-5 2e-5 3e-5 5e-5 --batch_sizes 16 32 64 --epochs 3 5 10)

############################### CoLA ###############################
sweep_task cola "${GRID[@]}" -- --fp16

############################### SST-2 ###############################
sweep_task sst2 "${GRID[@]}" -- --fp16

############################### MRPC ###############################
sweep_task mrpc "${GRID[@]}" -- --fp16

############################### QQP ###############################
sweep_task qqp "${GRID[@]}" -- --fp16

############################### STS-B ###############################
sweep_task stsb "${GRID[@]}" -- --fp16

############################### MNLI (matched and mismatched dev) ###############################
sweep_task mnli "${GRID[@]}" -- --fp16

############################### QNLI ###############################
sweep_task qnli "${GRID[@]}" -- --fp16

############################### RTE ###############################
sweep_task rte "${GRID[@]}" -- --fp16

finish_sweeps
