#!/usr/bin/env bash
# Fine-tune BioLinkBERT-large on MedQA-USMLE with the paper's hyper-parameters, then test that
# model on MMLU professional medicine.
#
#   bash run_examples_medqa_biolinkbert-large.sh                        # both, one after the other
#   bash run_examples_medqa_biolinkbert-large.sh professional_medicine  # MMLU only (MedQA model exists)
#   bash run_examples_medqa_biolinkbert-large.sh --dry-run              # print the commands
#   SEEDS="1 2 3" SMOKE=1 RESUMABLE=1 PARALLEL=1 ...                    # see --help and the README
#   bash run_examples_medqa_biolinkbert-large.sh --backend slurm --partition gpu  # one SLURM job per run (README: On a cluster)
#
# Data: data/mc/medqa_usmle_hf/{train,dev,test}.json and
#       data/mc/mmlu_hf/professional_medicine/{dev,val,test}.json (bash scripts/download_data.sh).
# Output: runs/medqa_usmle_hf/$MODEL, runs/mmlu_professional_medicine_eval/$MODEL.
# Then: python scripts/collect_results.py runs/

MODEL=${MODEL:-BioLinkBERT-large}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/run_lib.sh" "$@"

############################### MedQA ###############################
add_task mc medqa_usmle_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 2 --per_device_eval_batch_size 2 --gradient_accumulation_steps 32 \
  --weight_decay 0.01 --adam_beta1 0.9 --adam_beta2 0.98 --adam_epsilon 1e-6 \
  --learning_rate 3e-5 --warmup_steps 500 --num_train_epochs 6 --max_seq_length 512 --fp16 \
  --save_strategy no --evaluation_strategy steps --eval_steps 100 --overwrite_output_dir

############################### MMLU professional medicine ###############################
# The model fine-tuned on MedQA above (runs/medqa_usmle_hf/$MODEL), tested on MMLU professional
# medicine: prediction only. MMLU's dev split is passed as the train file, as in the original.
# It starts only once MedQA has finished (the original started both at once).
wait_for_tasks_above
add_task mc professional_medicine \
  data=mc/mmlu_hf/professional_medicine splits="dev val test" \
  from_run=medqa_usmle_hf out=mmlu_professional_medicine_eval \
  --do_predict --per_device_eval_batch_size 4 --max_seq_length 512 --fp16 --overwrite_output_dir

run_tasks
