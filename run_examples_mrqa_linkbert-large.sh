#!/usr/bin/env bash
# Fine-tune LinkBERT-large on the six MRQA extractive QA sets with the paper's hyper-parameters.
#
#   bash run_examples_mrqa_linkbert-large.sh                     # every task, one after another
#   bash run_examples_mrqa_linkbert-large.sh squad_hf hotpot_hf  # only these tasks
#   bash run_examples_mrqa_linkbert-large.sh --dry-run           # print the commands
#   PARALLEL=1 SEEDS="1 2 3" SMOKE=1 RESUMABLE=1 ...             # see --help and the README
#   bash run_examples_mrqa_linkbert-large.sh --backend slurm --partition gpu  # one SLURM job per run (README: On a cluster)
#
# Data: data/qa/<task>/{train,dev,test}.json (bash scripts/download_data.sh).
# Output: runs/<task>/$MODEL (log.txt, predict_results.json, ...). Then: python scripts/collect_results.py runs/
# The original passed the bare name LinkBERT-large as the model; the hub id is michiyasunaga/LinkBERT-large.

MODEL=${MODEL:-LinkBERT-large}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/run_lib.sh" "$@"

############################### HotpotQA ###############################
add_task qa hotpot_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### NaturalQuestions ###############################
add_task qa naturalqa_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### TriviaQA ###############################
add_task qa triviaqa_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### SQuAD ###############################
add_task qa squad_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### NewsQA ###############################
add_task qa newsqa_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### SearchQA ###############################
add_task qa searchqa_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

run_tasks
