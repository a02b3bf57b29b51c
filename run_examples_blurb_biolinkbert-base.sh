#!/usr/bin/env bash
# Fine-tune BioLinkBERT-base on the 13 BLURB tasks with the paper's hyper-parameters.
#
#   bash run_examples_blurb_biolinkbert-base.sh                 # every task, one after another
#   bash run_examples_blurb_biolinkbert-base.sh HoC_hf GAD_hf   # only these tasks
#   bash run_examples_blurb_biolinkbert-base.sh --dry-run       # print the commands
#   PARALLEL=1 SEEDS="1 2 3" SMOKE=1 RESUMABLE=1 ...            # see --help and the README
#   bash run_examples_blurb_biolinkbert-base.sh --backend slurm --partition gpu  # one SLURM job per run (README: On a cluster)
#
# Data: data/{seqcls,tokcls}/<task>/{train,dev,test}.json (bash scripts/download_data.sh).
# Output: runs/<task>/$MODEL (log.txt, predict_results.json, ...). Then: python scripts/collect_results.py runs/
# Edit a block's flags to change its hyper-parameters.

MODEL=${MODEL:-BioLinkBERT-base}
MODEL_PATH=${MODEL_PATH:-michiyasunaga/$MODEL}
source "$(dirname "$0")/scripts/run_lib.sh" "$@"

############################### QA: PubMedQA ###############################
add_task seqcls pubmedqa_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --warmup_steps 100 --num_train_epochs 30 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### QA: BioASQ ###############################
add_task seqcls bioasq_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --warmup_steps 100 --num_train_epochs 20 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### BIOSSES ###############################
add_task seqcls BIOSSES_hf \
  --do_train --do_eval --do_predict --metric_name pearsonr \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 1e-5 --num_train_epochs 30 --max_seq_length 512 --seed 5 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### HoC ###############################
add_task seqcls HoC_hf \
  --do_train --do_eval --do_predict --metric_name hoc \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 4e-5 --num_train_epochs 40 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### RE: ChemProt ###############################
add_task seqcls chemprot_hf \
  --do_train --do_eval --do_predict --metric_name PRF1 \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 3e-5 --num_train_epochs 10 --max_seq_length 256 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### RE: DDI ###############################
add_task seqcls DDI_hf \
  --do_train --do_eval --do_predict --metric_name PRF1 \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 2e-5 --num_train_epochs 5 --max_seq_length 256 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### RE: GAD ###############################
add_task seqcls GAD_hf \
  --do_train --do_eval --do_predict --metric_name PRF1 \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 3e-5 --num_train_epochs 10 --max_seq_length 256 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### EBM PICO ###############################
add_task tokcls ebmnlp_hf \
  --do_train --do_eval --do_predict --return_macro_metrics \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 5e-5 --num_train_epochs 1 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### NER: JNLPBA ###############################
add_task tokcls JNLPBA_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 1e-5 --warmup_ratio 0.1 --num_train_epochs 5 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### NER: NCBI-disease ###############################
add_task tokcls NCBI-disease_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 5e-5 --warmup_ratio 0.1 --num_train_epochs 20 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### NER: BC2GM ###############################
add_task tokcls BC2GM_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 6e-5 --warmup_ratio 0.1 --num_train_epochs 50 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### NER: BC5CDR-disease ###############################
add_task tokcls BC5CDR-disease_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 5e-5 --warmup_ratio 0.1 --num_train_epochs 8 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

############################### NER: BC5CDR-chem ###############################
add_task tokcls BC5CDR-chem_hf \
  --do_train --do_eval --do_predict \
  --per_device_train_batch_size 32 --gradient_accumulation_steps 1 --fp16 \
  --learning_rate 5e-5 --warmup_ratio 0.1 --num_train_epochs 20 --max_seq_length 512 \
  --save_strategy no --evaluation_strategy no --overwrite_output_dir

run_tasks
