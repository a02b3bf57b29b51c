#!/usr/bin/env bash
# Download the raw datasets that can be fetched automatically, and print the manual steps for the
# rest (MedQA-USMLE and BLURB). Then run scripts/preprocess_{mrqa,blurb,medqa,mmlu}.py.
#
#   bash scripts/download_raw_data.sh
#
# Environment: RAW_DIR       where the raw files go (default: <repo>/raw_data)
#              LINKBERT_REF  branch or commit of github.com/michiyasunaga/LinkBERT to take the
#                            in-house MRQA split files from (default: main)
#
# What lands where (the paths the preprocessing scripts read by default):
#   raw_data/mrqa/{train,dev}/{SQuAD,NewsQA,TriviaQA,SearchQA,HotpotQA,NaturalQuestions}.jsonl.gz
#   raw_data/mrqa/inhouse_splits/inhouse_split_{squad,newsqa,triviaqa,searchqa,hotpot,naturalqa}.json
#   raw_data/mmlu/data/{dev,val,test}/<subject>_{dev,val,test}.csv
#   raw_data/blurb/data_generation/...        (BLURB's own scripts; manual steps below)
#   raw_data/medqa/data_clean/...             (manual download, see below)
#
# Safe to re-run: files already downloaded and intact are skipped; a failed download is reported at
# the end (exit status 1) and retried on the next run.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAW="${RAW_DIR:-$REPO/raw_data}"
REF="${LINKBERT_REF:-main}"
MRQA_URL="https://s3.us-east-2.amazonaws.com/mrqa/release/v2"
SPLITS_URL="https://raw.githubusercontent.com/michiyasunaga/LinkBERT/$REF/scripts/inhouse_splits"
MMLU_URL="https://people.eecs.berkeley.edu/~hendrycks/data.tar"
BLURB_URL="https://microsoft.github.io/BLURB/sample_code/data_generation.tar.gz"
FAILED=()

if command -v curl >/dev/null; then
  get() { curl -fL --retry 3 -C - -o "$2" "$1"; }
elif command -v wget >/dev/null; then
  get() { wget -c -O "$2" "$1"; }
else
  echo "download_raw_data.sh: neither curl nor wget is installed" >&2
  exit 1
fi

intact() {  # is the file complete? (by its kind)
  case "${1%.part}" in
    *.gz) gzip -t "$1" 2>/dev/null ;;
    *.tar) tar -tf "$1" >/dev/null 2>&1 ;;
    *.json) python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null ;;
    *) [ -s "$1" ] ;;
  esac
}

# fetch URL FILE: download to FILE.part (resuming), check it, then rename; skip if FILE is intact.
fetch() {
  local url="$1" out="$2"
  if [ -f "$out" ] && intact "$out"; then
    echo "have      $out"
    return 0
  fi
  rm -f "$out"
  mkdir -p "$(dirname "$out")"
  if ! { [ -f "$out.part" ] && intact "$out.part"; }; then
    echo "fetching  $url"
    if ! get "$url" "$out.part"; then
      echo "FAILED    $url (a partial file is kept to resume from)" >&2
      FAILED+=("$url")
      return 1
    fi
    if ! intact "$out.part"; then
      rm -f "$out.part"
      echo "FAILED    $url (the download is corrupt and was removed)" >&2
      FAILED+=("$url")
      return 1
    fi
  fi
  mv "$out.part" "$out"
}

############################## MRQA (train and the official dev sets) ##############################
# Saved under the names the original release used (TriviaQA-web -> TriviaQA,
# NaturalQuestionsShort -> NaturalQuestions), still gzipped: the preprocessing reads .gz directly.
for split in train dev; do
  for pair in SQuAD:SQuAD NewsQA:NewsQA TriviaQA-web:TriviaQA SearchQA:SearchQA HotpotQA:HotpotQA \
              NaturalQuestionsShort:NaturalQuestions; do
    fetch "$MRQA_URL/$split/${pair%%:*}.jsonl.gz" "$RAW/mrqa/$split/${pair##*:}.jsonl.gz"
  done
done

# The in-house dev/test split of each official dev set, from the original repository.
for name in squad newsqa triviaqa searchqa hotpot naturalqa; do
  fetch "$SPLITS_URL/inhouse_split_$name.json" "$RAW/mrqa/inhouse_splits/inhouse_split_$name.json"
done

############################## MMLU ##############################
if [ -f "$RAW/mmlu/data/test/professional_medicine_test.csv" ]; then
  echo "have      $RAW/mmlu/data"
elif fetch "$MMLU_URL" "$RAW/mmlu/data.tar"; then
  if tar -xf "$RAW/mmlu/data.tar" -C "$RAW/mmlu"; then
    rm "$RAW/mmlu/data.tar"
    echo "unpacked  $RAW/mmlu/data"
  else
    FAILED+=("unpacking $RAW/mmlu/data.tar")
  fi
fi

############################## BLURB (data generation scripts; manual steps) ##############################
if [ -d "$RAW/blurb/data_generation" ]; then
  echo "have      $RAW/blurb/data_generation"
elif fetch "$BLURB_URL" "$RAW/blurb/data_generation.tar.gz"; then
  if tar -xzf "$RAW/blurb/data_generation.tar.gz" -C "$RAW/blurb"; then
    echo "unpacked  $RAW/blurb/data_generation"
  else
    FAILED+=("unpacking $RAW/blurb/data_generation.tar.gz")
  fi
fi
mkdir -p "$RAW/medqa"

cat <<EOF

==================================== manual steps ====================================
MedQA-USMLE (the data is on Google Drive, which needs a browser):
  1. Follow https://github.com/jind11/MedQA and download data_clean.zip from
     https://drive.google.com/file/d/1ImYUSLk9JbgHXOemfvyiDiirluZHPeQw/view
  2. Put it at $RAW/medqa/data_clean.zip and unzip it there:
       (cd "$RAW/medqa" && unzip data_clean.zip)
     so that $RAW/medqa/data_clean/questions/US/4_options/phrases_no_exclude_train.jsonl exists.

BLURB (each dataset comes from its own source; BLURB's scripts assemble them):
  1. Follow $RAW/blurb/data_generation/README.md
     (also at https://microsoft.github.io/BLURB/ -> "Data generation").
  2. At the end the datasets sit in $RAW/blurb/data_generation/data/<name>/,
     e.g. .../data/NCBI-disease/train.tsv, .../data/pubmedqa/pqal_fold0/train_set.json.

Then:
  python scripts/preprocess_mrqa.py
  python scripts/preprocess_mmlu.py
  python scripts/preprocess_medqa.py
  python scripts/preprocess_blurb.py      # or --datasets <the ones you have>
======================================================================================
EOF

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "download_raw_data.sh: ${#FAILED[@]} step(s) failed; run the script again to retry:" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "All automatic downloads are in $RAW."
