"""The packaged WordLlama embedder: described without loading, counted without weights, Matryoshka-trained."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from embedops.compose import migrator
from embedops.embedding.fingerprint import take_fingerprint
from embedops.embedding.registry import PackagedTokens, describe_embedder, load_embedder, token_source
from embedops.vectors.storage import StorageOptions
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV, write_corpus

TEXTS = ["how can I change my password", "steps to reset a forgotten password", "the recipe needs two eggs", ""]


def test_described_without_importing_wordllama_and_marked_matryoshka() -> None:
    code = ("import sys, json\nfrom embedops.embedding.registry import describe_embedder\n"
            "ref = describe_embedder('wordllama-256')\n"
            "print(json.dumps({'dims': ref.dims, 'extra': ref.extra, 'loaded': 'wordllama' in sys.modules}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    timeout=60, env=CHILD_ENV).stdout)
    assert out == {"dims": 256, "extra": {"name": "wordllama-256", "package": "wordllama",
                                          "matryoshka_dims": [64, 128, 256], "languages": ["en"]}, "loaded": False}


def test_vectors_are_unit_length_deterministic_and_rank_related_text_first() -> None:
    emb = load_embedder("wordllama-256")
    assert emb.ref == describe_embedder("wordllama-256") and emb.ref.provider == "wordllama"
    vecs = emb.embed(TEXTS)
    assert vecs.shape == (4, 256) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-5)
    assert not np.isnan(vecs).any() and np.linalg.norm(vecs[3]) == 0.0  # an empty text: zero, never NaN
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.1
    np.testing.assert_allclose(emb.embed([TEXTS[1]])[0], vecs[1], atol=1e-6)
    assert take_fingerprint(emb).digest == take_fingerprint(emb).digest


def test_tokens_are_counted_the_same_without_the_weights() -> None:
    tokens = PackagedTokens(describe_embedder("wordllama-256"))
    emb = load_embedder("wordllama-256")
    for text in [*TEXTS, "Mitochondria are the powerhouse of the cell; ATP synthase spins."]:
        assert tokens.count_tokens(text) == emb.count_tokens(text)
    assert token_source("wordllama-256").tokenizer_name == emb.tokenizer_name == "wordllama-l2_supercat"


def test_truncation_to_a_trained_size_plans_without_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_corpus(tmp_path / "docs", 12)
    ws = Workspace.init(tmp_path / "ws", embedder="wordllama-256")
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    m = migrator(ws)
    assert m.plan(storage=StorageOptions(dims=128)).facts.warnings == []
    (warning,) = m.plan(storage=StorageOptions(dims=100)).facts.warnings
    assert "trained for 64, 128, 256" in warning
    ws.close()
