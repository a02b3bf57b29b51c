#!/usr/bin/env bash
# The paper's two further MRQA tables for LinkBERT-large: few-shot QA (10% of the training questions) on
# HotpotQA, TriviaQA, NaturalQuestions and SQuAD, and SQuAD with 1-2 distracting documents.
# The release has no script for these; the flags are those of run_examples_mrqa_linkbert-large.sh for
# the same set (the paper gives no other), plus --train_fraction 0.1 for few-shot.
#
#   bash run_examples_mrqa_extra_linkbert-large.sh                          # every run, one after another
#   bash run_examples_mrqa_extra_linkbert-large.sh squad_fewshot squad_distract
#   bash run_examples_mrqa_extra_linkbert-large.sh --dry-run                # print the commands
#   PARALLEL=1 SEEDS="1 2 3" SMOKE=1 RESUMABLE=1 ...                 # see scripts/run_lib.sh
#
# Data: data/qa/<task>_hf/ as for the full runs (bash scripts/download_data.sh); the few-shot
# subsample is drawn by the run itself (the same questions for the same --seed, whatever the model).
# SQuAD with distracting documents: make data/qa/squad_distract_hf first, once per split:
#   for s in train dev test; do python scripts/add_distracting_documents.py --seed 0 --max_distractors 2 \
#     --input data/qa/squad_hf/$s.json --output data/qa/squad_distract_hf/$s.json; done
# Output: runs/<task>_fewshot10/$MODEL and runs/squad_distract_hf/$MODEL. Then: python scripts/collect_results.py runs/

MODEL=${MODEL:-LinkBERT-large}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/run_lib.sh" "$@"

############################### Few-shot (10%): HotpotQA ###############################
add_task qa hotpot_fewshot data=qa/hotpot_hf out=hotpot_hf_fewshot10 \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 --train_fraction 0.1 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### Few-shot (10%): TriviaQA ###############################
add_task qa triviaqa_fewshot data=qa/triviaqa_hf out=triviaqa_hf_fewshot10 \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 --train_fraction 0.1 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### Few-shot (10%): NaturalQuestions ###############################
add_task qa naturalqa_fewshot data=qa/naturalqa_hf out=naturalqa_hf_fewshot10 \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 --train_fraction 0.1 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 4 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### Few-shot (10%): SQuAD ###############################
add_task qa squad_fewshot data=qa/squad_hf out=squad_hf_fewshot10 \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 --train_fraction 0.1 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

############################### SQuAD with distracting documents ###############################
add_task qa squad_distract data=qa/squad_distract_hf out=squad_distract_hf \
  --do_train --do_eval --do_predict --preprocessing_num_workers 10 \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
  --save_strategy no --evaluation_strategy steps --eval_steps 1000 --overwrite_output_dir

run_tasks
