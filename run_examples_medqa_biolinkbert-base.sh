#!/usr/bin/env bash
# Fine-tune BioLinkBERT-base on MedQA-USMLE (4-way multiple choice) with the paper's hyper-parameters.
#
#   bash run_examples_medqa_biolinkbert-base.sh              # run it
#   bash run_examples_medqa_biolinkbert-base.sh --dry-run    # print the command
#   SEEDS="1 2 3" SMOKE=1 RESUMABLE=1 PARALLEL=1 ...         # see --help and the README
#   bash run_examples_medqa_biolinkbert-base.sh --backend slurm --partition gpu  # one SLURM job per run (README: On a cluster)
#
# Data: data/mc/medqa_usmle_hf/{train,dev,test}.json (bash scripts/download_data.sh).
# Output: runs/medqa_usmle_hf/$MODEL. Then: python scripts/collect_results.py runs/

MODEL=${MODEL:-BioLinkBERT-base}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/run_lib.sh" "$@"

############################### MedQA ###############################
add_task mc medqa_usmle_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \
  --learning_rate 2e-5 --warmup_steps 100 --num_train_epochs 2 --max_seq_length 512 --fp16 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

run_tasks
