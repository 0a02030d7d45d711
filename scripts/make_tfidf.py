"""Build a real sparse set offline: TF-IDF rows of third-party docstrings.

    pip install -e ".[test]"                      # scikit-learn's TfidfVectorizer
    python scripts/make_tfidf.py --n 12000        # -> outputs/data/tfidf_12000.npz (scipy.sparse.save_npz)

The documents are the docstrings of the third-party packages the sentence set reads
(``make_sentence_embeddings.PACKAGES``, those installed here), parsed with ``ast`` and never
imported, one document per docstring of at least 20 words, deduplicated and sampled with a
seed. scikit-learn's TfidfVectorizer (word unigrams, English stop words removed, every
term kept as scikit-learn's defaults keep it, sublinear tf, unit-norm rows) turns them into CSR rows of float32: the
kind of input scikit-learn's random projections are made for. The Python standard library
and English word lists stay reserved for independent checks.

A .json beside the .npz records the packages and versions, the counts and the vocabulary size.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sentence_embeddings import DISTRIBUTIONS, PACKAGES, docstrings, package_dir  # noqa: E402

MIN_WORDS = 20


def documents(packages) -> tuple[list[str], dict]:
    found: set[str] = set()
    per_package = {}
    for name in packages:
        try:
            root = package_dir(name)
        except SystemExit:
            continue  # not installed here
        before = len(found)
        for path in sorted(root.rglob("*.py")):
            found.update(" ".join(text.split()) for text in docstrings(path) if len(text.split()) >= MIN_WORDS)
        version = importlib.metadata.version(DISTRIBUTIONS.get(name, name))
        per_package[name] = {"version": version, "new_documents": len(found) - before}
        print(f"  {name}: {len(found) - before} new documents ({len(found)} in all)", flush=True)
    return sorted(found), per_package


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12_000, help="documents (sampled with --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/data/tfidf_<n>.npz")
    args = parser.parse_args(argv)
    # lazy: the vectorizer is this script's only need of scikit-learn
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    out = args.out or Path("outputs/data") / f"tfidf_{args.n}.npz"
    if out.exists():
        print(f"make_tfidf: {out} exists; remove it to rebuild", file=sys.stderr)
        return 2
    began = time.perf_counter()
    texts, per_package = documents(PACKAGES)
    if len(texts) < args.n:
        print(f"make_tfidf: only {len(texts)} documents, asked for {args.n}", file=sys.stderr)
        return 2
    picked = np.sort(np.random.default_rng(args.seed).choice(len(texts), size=args.n, replace=False))
    texts = [texts[i] for i in picked]
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32)
    X = vectorizer.fit_transform(texts).tocsr()
    out.parent.mkdir(parents=True, exist_ok=True)
    sp.save_npz(out, X)
    record = {
        "rows": str(out),
        "shape": list(X.shape),
        "nnz": int(X.nnz),
        "density": X.nnz / (X.shape[0] * X.shape[1]),
        "empty_rows": int((np.diff(X.indptr) == 0).sum()),
        "text": {"source": "docstrings of installed third-party packages (ast, not imported)",
                 "packages": per_package, "min_words": MIN_WORDS, "seed": args.seed},
        "vectorizer": {"stop_words": "english", "min_df": 1, "sublinear_tf": True, "norm": "l2",
                       "scikit_learn": importlib.metadata.version("scikit-learn")},
        "sha256_of_documents": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        "seconds": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} {X.shape}, {X.nnz} nonzeros, and {out.with_suffix('.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
