#!/usr/bin/env bash
# LinkBERT pretraining with the paper's settings (Yasunaga et al., ACL 2022,
# https://aclanthology.org/2022.acl-long.551, sec. 5.1 "Implementation" and sec. 6.1), one block per
# released model, on a linked corpus built by scripts/build_linked_corpus.py. The paper's global batches are reached with torchrun over
# NPROC GPUs x per-device batch x accumulation; the blocks below assume 8 GPUs.
#
#   bash run_examples_pretrain_linkbert.sh                 # every block, one after another
#   bash run_examples_pretrain_linkbert.sh LinkBERT-base   # only this block
#   bash run_examples_pretrain_linkbert.sh --dry-run       # print the commands
#
# Corpora (environment): WIKI_CORPUS (Wikipedia with hyperlinks:
#   python scripts/build_linked_corpus.py wikipedia --dump enwiki-latest-pages-articles.xml.bz2 --output ...)
# and PUBMED_CORPUS (PubMed abstracts with citation links: ... citations --input ... --output ...).
# A killed run resumes from its last checkpoint when started again (same command).

set -euo pipefail
NPROC=${NPROC:-8}
OUT_DIR=${OUT_DIR:-runs/pretrain}
WIKI_CORPUS=${WIKI_CORPUS:-data/pretrain/wikipedia_linked.jsonl}
PUBMED_CORPUS=${PUBMED_CORPUS:-data/pretrain/pubmed_linked.jsonl}
DRY_RUN=0
WANTED=()
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (try --help)" >&2; exit 2 ;;
    *) WANTED+=("$arg") ;;
  esac
done

# Shared by every block: 512-token inputs of two ~254-token segments, relations 1/3 each,
# linked documents drawn by inverse in-degree, BERT's 15% masking, AdamW (0.9, 0.98), fp16.
COMMON=(--do_train --do_eval --max_seq_length 512 --validation_split_percentage 1
        --relation_probabilities 0.3333333333,0.3333333333,0.3333333334 --linked_sampling inverse_in_degree
        --mlm_probability 0.15 --adam_beta1 0.9 --adam_beta2 0.98 --adam_epsilon 1e-6 --weight_decay 0.01
        --lr_scheduler_type linear --fp16 --preprocessing_num_workers 16 --logging_steps 100
        --eval_strategy steps --eval_steps 5000 --save_strategy steps --save_steps 2000 --save_total_limit 2)

pretrain() {  # pretrain NAME CORPUS INIT FLAGS...
  local name=$1 corpus=$2 init=$3
  shift 3
  if [[ ${#WANTED[@]} -gt 0 && ! " ${WANTED[*]} " =~ " $name " ]]; then return 0; fi
  local -a cmd=(torchrun --nproc_per_node "$NPROC" -m linkbert.pretrain.run_pretrain
                --model_name_or_path "$init" --corpus_file "$corpus" "${COMMON[@]}" "$@"
                --output_dir "$OUT_DIR/$name")
  if [[ $DRY_RUN == 1 ]]; then echo "${cmd[*]}"; return 0; fi
  [[ -f $corpus ]] || { echo "missing corpus $corpus: build it with scripts/build_linked_corpus.py" >&2; exit 2; }
  mkdir -p "$OUT_DIR/$name"
  "${cmd[@]}" 2>&1 | tee -a "$OUT_DIR/$name/log.txt"
}

############################### LinkBERT-base ###############################
# Sec. 5.1: "we initialize LinkBERT with the BERTbase checkpoint released by Devlin et al. (2019) and
# continue pretraining ... peak learning rate 3e-4 ... 40,000 steps"; the rest as -tiny: warm-up
# 5,000 steps then linear decay, weight decay 0.01, batch 2,048 sequences of 512 tokens, fp16.
# The cased BERT: the released LinkBERT configs have the cased vocabulary (28,996 word pieces).
# Global batch 2048 = 8 GPUs x 16 x 16.
pretrain LinkBERT-base "$WIKI_CORPUS" bert-base-cased \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 16 \
  --learning_rate 3e-4 --max_steps 40000 --warmup_steps 5000

############################### LinkBERT-large ###############################
# Sec. 5.1: "the same procedure as -base, except ... a peak learning rate of 2e-4" (BERT-large, cased).
# Global batch 2048 = 8 GPUs x 8 x 32.
pretrain LinkBERT-large "$WIKI_CORPUS" bert-large-cased \
  --per_device_train_batch_size 8 --gradient_accumulation_steps 32 \
  --learning_rate 2e-4 --max_steps 40000 --warmup_steps 5000

############################### BioLinkBERT-base ###############################
# Sec. 6.1: "from scratch, following the same hyperparameters as the PubmedBERT-base ... peak learning
# rate 6e-4, batch size 8,192, and train for 62,500 steps ... warm up the learning rate in the first
# 10% of steps and then linearly decay it". --from_scratch reads only PubMedBERT's config and
# vocabulary, no weights. Global batch 8192 = 8 GPUs x 16 x 64.
pretrain BioLinkBERT-base "$PUBMED_CORPUS" microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract --from_scratch \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 64 \
  --learning_rate 6e-4 --max_steps 62500 --warmup_ratio 0.1

############################### BioLinkBERT-large ###############################
# Sec. 6.1: "from scratch, following the same procedure as -base, except that we use a peak learning
# rate of 4e-4 and warm up steps of 20%". BERT-large's shape (--config_name) with PubMedBERT's
# vocabulary (the released BioLinkBERT-large has -base's 28,895 word pieces). Global batch 8192 =
# 8 GPUs x 8 x 128.
pretrain BioLinkBERT-large "$PUBMED_CORPUS" microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract --from_scratch \
  --config_name bert-large-uncased --per_device_train_batch_size 8 --gradient_accumulation_steps 128 \
  --learning_rate 4e-4 --max_steps 62500 --warmup_ratio 0.2
