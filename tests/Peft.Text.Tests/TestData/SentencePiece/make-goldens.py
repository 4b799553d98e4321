#!/usr/bin/python3
"""Writes goldens.json: the ids and pieces that SentencePiece itself (Debian sentencepiece 0.1.97) gives for TEXTS.

Single-line texts are encoded by the spm_encode command (--output_format=id and =piece); texts with a line break,
which spm_encode would split into separate sentences, by the Python binding of the same library (Debian
python3-sentencepiece 0.1.97). Both paths are run where both apply and must agree.
Run from this folder: /usr/bin/python3 make-goldens.py
"""
import json
import subprocess
import sentencepiece as spm

MODELS = ["llama-bpe.model", "unigram.model", "bpe-trim.model"]
TEXTS = [
    "Call me Ishmael.",
    "Hello world, this is a test.",
    "",
    "x",
    " leading space",
    "trailing space ",
    "multiple   spaces   between words",
    "a  b",
    "   ",
    "line one\nline two",
    "\n",
    "tabs\tand\r\nCRLF\r\n",
    "digits 1234567890 and 3.14159, year 1851",
    "Punctuation: (a), [b], {c}; \"quotes\" \u2014 dashes \u2013 and\u2026 ellipsis!?",
    "na\u00efve caf\u00e9, Stra\u00dfe, \u00c5ngstr\u00f6m, fa\u00e7ade",
    "e\u0301 combining accent vs \u00e9 precomposed",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
    "\u4e2d\u6587 and \ud55c\uad6d\uc5b4 mixed",
    "emoji \U0001F642\U0001F44D\U0001F3FD and \U0001F433",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0438 \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "The whale! The whale! Thar she blows!",
    "UPPER lower MiXeD",
    "<s> literal markers </s> <unk>",
    "NBSP\u00a0and zero\u200bwidth",
    "email@example.com https://example.org/path?q=1&r=2",
]


def spm_encode(model, text, fmt):
    out = subprocess.run(["spm_encode", f"--model={model}", f"--output_format={fmt}"],
                         input=(text + "\n").encode("utf-8"), capture_output=True, check=True).stdout.decode("utf-8")
    line = out[:-1] if out.endswith("\n") else out
    return line.split(" ") if line else []


def main():
    goldens = {"generator": "sentencepiece 0.1.97 (Debian), spm_encode / python3-sentencepiece", "models": {}}
    for model in MODELS:
        sp = spm.SentencePieceProcessor(model_file=model)
        cases = []
        for text in TEXTS:
            ids = sp.encode(text, out_type=int)
            pieces = sp.encode(text, out_type=str)
            source = "python3-sentencepiece"
            if "\n" not in text and "\r" not in text:
                cli_ids = [int(i) for i in spm_encode(model, text, "id")]
                cli_pieces = spm_encode(model, text, "piece")
                assert cli_ids == ids, (model, text, cli_ids, ids)
                assert cli_pieces == pieces, (model, text, cli_pieces, pieces)
                source = "spm_encode"
            assert sp.decode(ids) == text or model != "llama-bpe.model", (model, text, sp.decode(ids))
            cases.append({"text": text, "ids": ids, "pieces": pieces, "decoded": sp.decode(ids), "source": source})
        goldens["models"][model] = {
            "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
            "cases": cases,
        }
    # One case a line, non-ASCII escaped, so diffs stay readable.
    lines = ["{", f' "generator": {json.dumps(goldens["generator"])},', ' "models": {']
    for m, (model, data) in enumerate(goldens["models"].items()):
        head = {k: v for k, v in data.items() if k != "cases"}
        lines.append(f'  {json.dumps(model)}: {{')
        lines += [f'   {json.dumps(k)}: {json.dumps(v)},' for k, v in head.items()]
        lines.append('   "cases": [')
        cases = data["cases"]
        lines += ['    ' + json.dumps(c, ensure_ascii=True) + (',' if i + 1 < len(cases) else '') for i, c in enumerate(cases)]
        lines.append('   ]')
        lines.append('  }' + (',' if m + 1 < len(goldens["models"]) else ''))
    lines += [' }', '}']
    with open("goldens.json", "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open("goldens.json", encoding="ascii"))


if __name__ == "__main__":
    main()
