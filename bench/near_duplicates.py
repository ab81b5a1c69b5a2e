"""Near-duplicate detection on planted duplicates, curation throughput, language-id agreement.

The corpus is built from SciFact abstracts (``shared/data/scifact``, read at run
time, never copied): a seeded sample of originals, some of them with planted
copies, each copy of one kind:

* ``exact``       the same text
* ``edits``       2-8% of the words substituted, deleted, inserted or misspelt
* ``reorder``     the sentences in another order
* ``boilerplate`` the page header/footer replaced by another site's (or added/removed)
* ``combined``    2-4% edits, two sentences swapped and the header/footer changed

and distinct-but-similar documents that must stay apart:

* ``topic``       another abstract on the same topic (most words in common with an original)
* ``shared_lead`` another abstract that starts with the original's first sentence
* ``template``    30% of all documents carry one of five sites' header/footer, so
                  different abstracts share the same boilerplate

Documents reach the :class:`Curator` in a shuffled order, in sync-sized batches
through ``Curator.plan``. A document flagged ``duplicate``/``near_duplicate``
is right when its canonical document is in its planted group: precision over
flagged documents, recall over the Σ(group size - 1) documents that should be.

``--sweep`` prints, for a grid of shingle sizes and thresholds, the exact
Jaccard similarities of the planted pairs (copies with their original,
distinct-but-similar documents with theirs) on the tuning seed: the defaults
were chosen there and are reported on another seed.

Language id: each document of XQuAD en/de/es/zh (and each of its sentences
grouped into ~300-character chunks) tagged with the default candidates; the
agreement with the folder's language is reported.

Run: ``.venv/bin/python bench/near_duplicates.py [--data ../shared/data] [--seed 2] [--sweep --seed 1]``
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, Check, Report, Timer, load_average, log, timed

sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.curate import CurateSettings, CurationDocument, Curator, detect_language, quality_findings  # noqa: E402
from embedops.curate.language import detect_languages  # noqa: E402
from embedops.curate.signature import SignatureSpec, shingles, signature  # noqa: E402

COPY_KINDS = ("exact", "edits", "reorder", "boilerplate", "combined")
SITES = ("Journal of Clinical Findings", "BioMed Weekly", "The Research Digest", "Health Science Today",
         "Open Medicine Review")
BATCH = 500


@dataclass
class Doc:
    doc_id: str
    text: str
    group: str  # planted group: an original and its copies share one
    kind: str   # original, a copy kind, or a distinct-but-similar kind
    like: str = ""  # the group of the original a copy or a distinct-but-similar document resembles


def load_abstracts(data: Path) -> list[str]:
    rows = [json.loads(line) for line in (data / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows if len(r["text"].split()) >= 40]


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def template(rng: random.Random, site: str) -> tuple[str, str]:
    """A site's header and footer; dates, volumes and counts vary from page to page."""
    year, month = rng.randint(2005, 2023), rng.choice(("January", "March", "June", "September", "November"))
    header = "\n".join([f"{site} · Vol. {rng.randint(1, 40)} · {month} {year}",
                        "Home | Articles | Topics | About | Contact",
                        f"Published {rng.randint(1, 28)} {month} {year} · {rng.randint(2, 15)} min read"])
    footer = "\n".join(["Share: Twitter | Facebook | LinkedIn | Email",
                        f"Cite this article: {site}, {year}; {rng.randint(1, 40)}({rng.randint(1, 12)}).",
                        f"© {year} {site}. All rights reserved. Privacy policy · Terms of use"])
    return header, footer


def wrap(text: str, rng: random.Random, site: str | None) -> str:
    if site is None:
        return text
    header, footer = template(rng, site)
    return f"{header}\n\n{text}\n\n{footer}"


def edit_words(text: str, rng: random.Random, rate: float, vocabulary: list[str]) -> str:
    words = text.split()
    for _ in range(max(1, round(rate * len(words)))):
        i = rng.randrange(len(words))
        op = rng.choice(("substitute", "delete", "insert", "typo"))
        if op == "substitute":
            words[i] = rng.choice(vocabulary)
        elif op == "delete" and len(words) > 10:
            del words[i]
        elif op == "insert":
            words.insert(i, rng.choice(vocabulary))
        elif len(words[i]) > 3:
            j = rng.randrange(len(words[i]) - 1)
            words[i] = words[i][:j] + words[i][j + 1] + words[i][j] + words[i][j + 2:]
    return " ".join(words)


def reorder(text: str, rng: random.Random, swaps: int | None = None) -> str:
    parts = sentences(text)
    if len(parts) < 2:
        return text
    if swaps is None:
        shuffled = parts[:]
        while shuffled == parts:
            rng.shuffle(shuffled)
        return " ".join(shuffled)
    for _ in range(swaps):
        i = rng.randrange(len(parts) - 1)
        parts[i], parts[i + 1] = parts[i + 1], parts[i]
    return " ".join(parts)


def make_copy(body: str, site: str | None, kind: str, rng: random.Random, vocabulary: list[str]) -> str:
    other_site = rng.choice([None, *(s for s in SITES if s != site)]) if site else rng.choice(SITES)
    if kind == "edits":
        return wrap(edit_words(body, rng, rng.uniform(0.02, 0.08), vocabulary), rng, site)
    if kind == "reorder":
        return wrap(reorder(body, rng), rng, site)
    if kind == "boilerplate":
        return wrap(body, rng, other_site)
    if kind == "combined":
        return wrap(reorder(edit_words(body, rng, rng.uniform(0.02, 0.04), vocabulary), rng, swaps=1), rng, other_site)
    raise ValueError(kind)


def nearest_topic(body: str, pool: list[str], sample: int, rng: random.Random) -> str:
    """The abstract among ``sample`` random ones sharing most content words with ``body``, taken
    out of the pool (a pool abstract used twice would plant a real duplicate)."""
    words = {w for w in re.findall(r"[a-z]{4,}", body.lower())}
    candidates = rng.sample(range(len(pool)), min(sample, len(pool)))
    best = max(candidates, key=lambda i: len(words & set(re.findall(r"[a-z]{4,}", pool[i].lower()))))
    return pool.pop(best)


def build_corpus(abstracts: list[str], seed: int, originals: int) -> list[Doc]:
    rng = random.Random(seed)
    rng.shuffle(abstracts)
    chosen, pool = abstracts[:originals], abstracts[originals:]
    # Inserted and substituted words come from abstracts that are in no document.
    vocabulary = sorted({w for text in pool[-300:] for w in text.split() if w.isalpha()})
    pool = pool[:-300]
    docs: list[Doc] = []
    for i, body in enumerate(chosen):
        site = rng.choice(SITES) if rng.random() < 0.3 else None
        original = wrap(body, rng, site)
        docs.append(Doc(f"d{i}", original, f"g{i}", "original"))
        if rng.random() < 0.4:
            for j in range(rng.randint(1, 3)):
                kind = rng.choice(COPY_KINDS)
                text = original if kind == "exact" else make_copy(body, site, kind, rng, vocabulary)
                docs.append(Doc(f"d{i}c{j}", text, f"g{i}", kind, f"g{i}"))
        docs.extend(distinct_similar(i, body, pool, rng))
    return docs


def distinct_similar(i: int, body: str, pool: list[str], rng: random.Random) -> list[Doc]:
    """At most one distinct-but-similar document for original ``i`` (a fifth of them each kind)."""
    draw = rng.random()
    site = rng.choice(SITES) if rng.random() < 0.3 else None
    if draw < 0.2:
        return [Doc(f"d{i}t", wrap(nearest_topic(body, pool, 300, rng), rng, site), f"g{i}t", "topic", f"g{i}")]
    if draw < 0.4:
        lead = sentences(body)[0]
        other = pool.pop(rng.randrange(len(pool)))
        return [Doc(f"d{i}l", wrap(f"{lead} {other}", rng, site), f"g{i}l", "shared_lead", f"g{i}")]
    return []


def detection(docs: list[Doc], settings: CurateSettings, seed: int) -> tuple[dict[str, float], Timer]:
    """Precision, recall, counts and the time the curation took (shuffled arrival, batches of BATCH)."""
    order = docs[:]
    random.Random(seed + 1000).shuffle(order)
    by_id = {d.doc_id: d for d in docs}
    arrival = {d.doc_id: float(n // BATCH) for n, d in enumerate(order)}  # one first_seen per sync batch
    curator = Curator(settings, _NoState())
    load: Callable[[object], list[CurationDocument]] = lambda ids: [_doc(by_id[i], arrival) for i in ids]  # noqa: E731
    final = {}
    with timed() as t:
        for start in range(0, len(order), BATCH):
            plan = curator.plan([_doc(d, arrival) for d in order[start:start + BATCH]], [], load)
            final.update(plan.decisions)
    flagged = {d: dec.canonical_id for d, dec in final.items() if dec.reason in ("duplicate", "near_duplicate")}
    right = sum(1 for d, c in flagged.items() if c is not None and by_id[c].group == by_id[d].group)
    groups: dict[str, int] = {}
    for d in docs:
        groups[d.group] = groups.get(d.group, 0) + 1
    should = sum(n - 1 for n in groups.values())
    figures = {"documents": len(docs), "planted_copies": should, "flagged": len(flagged), "right": right,
               "precision": right / len(flagged) if flagged else 1.0, "recall": right / should if should else 1.0,
               "other_quarantined": sum(1 for d in final.values() if d.reason not in (None, "duplicate", "near_duplicate"))}
    return figures, t


class _NoState:
    def curated_documents(self) -> list[object]:
        return []


def _doc(d: Doc, arrival: dict[str, float]) -> CurationDocument:
    return CurationDocument(d.doc_id, d.text, first_seen=arrival[d.doc_id])


def pairs_at_threshold(docs: list[Doc], settings: CurateSettings) -> dict[str, float]:
    """Per kind, the share of planted pairs (document, the original it resembles) whose exact
    Jaccard similarity reaches the threshold: should be 1 for copies, 0 for distinct documents."""
    originals = {d.group: d for d in docs if d.kind == "original"}
    out: dict[str, list[float]] = {}
    for d in docs:
        if d.like:
            out.setdefault(d.kind, []).append(jaccard(d.text, originals[d.like].text, settings.shingle_size))
    return {k: sum(1 for v in vs if v >= settings.jaccard_threshold) / len(vs) for k, vs in sorted(out.items())}


def jaccard(a: str, b: str, k: int) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def sweep(docs: list[Doc]) -> None:
    """Exact-Jaccard separation of planted pairs per shingle size: the data the defaults were chosen on."""
    originals = {d.group: d for d in docs if d.kind == "original"}
    pairs = [(d, originals[d.like]) for d in docs if d.like]
    print("shingle  threshold  copies>=t  distinct>=t  min(copies)  max(distinct)")
    for k in (1, 2, 3, 4, 5):
        sims = [(d.kind in COPY_KINDS, jaccard(d.text, o.text, k)) for d, o in pairs]
        copies = [s for is_copy, s in sims if is_copy]
        distinct = [s for is_copy, s in sims if not is_copy]
        for t in (0.3, 0.4, 0.5, 0.6, 0.7):
            print(f"{k:7d}  {t:9.1f}  {sum(s >= t for s in copies) / len(copies):9.3f}  "
                  f"{sum(s >= t for s in distinct):11d}  {min(copies):11.3f}  {max(distinct):13.3f}")


def language_agreement(data: Path) -> dict[str, dict[str, float]]:
    """Per language: share of documents, and of ~300-character chunks, tagged with the folder's language;
    documents the default quality rules would quarantine."""
    out = {}
    settings = CurateSettings()
    for lang in ("en", "de", "es", "zh"):
        texts = [json.loads(line)["text"] for line in
                 (data / "xquad" / lang / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
        chunks = [c for t in texts for c in chunk(t)]
        with timed() as t:
            doc_tags = [detect_language(text) for text in texts]
        chunk_tags = detect_languages(chunks)
        # Clean, edited text: any quality quarantine here is a false positive of the default thresholds.
        flagged = sum(1 for text, tag in zip(texts, doc_tags, strict=True) if quality_findings(text, settings, tag))
        out[lang] = {"documents": len(texts), "doc_agreement": sum(x == lang for x in doc_tags) / len(texts),
                     "quality_quarantined": flagged,
                     "chunks": len(chunks), "chunk_agreement": sum(x == lang for x in chunk_tags) / len(chunks),
                     "docs_per_s": len(texts) / t.seconds}
    return out


def chunk(text: str, size: int = 300) -> list[str]:
    """Sentences (Latin or CJK punctuation) grouped up to ``size`` characters."""
    out, current = [], ""
    for sentence in re.split(r"(?<=[.!?。！？])\s*", text):
        if current and len(current) + len(sentence) > size:
            out.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    return [c for c in [*out, current] if c.strip()]


def throughput(docs: list[Doc]) -> dict[str, float]:
    """Docs/s of the parts alone: signatures, language tags."""
    settings = CurateSettings()
    spec = SignatureSpec(settings.shingle_size, settings.num_perm)
    with timed() as sig:
        for d in docs:
            signature(d.text, spec)
    with timed() as lang:
        for d in docs:
            detect_language(d.text)
    return {"signatures_per_cpu_s": len(docs) / sig.cpu_seconds, "language_per_cpu_s": len(docs) / lang.cpu_seconds,
            "load_average_after": load_average() or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=2, help="corpus seed (defaults were tuned on seed 1)")
    parser.add_argument("--originals", type=int, default=2000)
    parser.add_argument("--sweep", action="store_true", help="print the tuning grid for this seed and stop")
    args = parser.parse_args()
    docs = build_corpus(load_abstracts(args.data), args.seed, args.originals)
    if args.sweep:
        sweep(docs)
        return
    settings = CurateSettings()
    log(f"{len(docs)} documents; curating with the defaults")
    figures, took = detection(docs, settings, args.seed)
    # Wall clock and CPU: on a shared machine the CPU figure is the one that repeats.
    figures["docs_per_s"] = figures["documents"] / took.seconds
    figures["docs_per_cpu_s"] = figures["documents"] / took.cpu_seconds
    figures["pairs_at_threshold_by_kind"] = pairs_at_threshold(docs, settings)
    figures.update(throughput(docs))
    figures["language"] = language_agreement(args.data)
    report(figures, settings, args.seed)


def report(figures: dict[str, object], settings: CurateSettings, seed: int) -> None:
    lang = figures["language"]
    assert isinstance(lang, dict)
    docs = sum(v["documents"] for v in lang.values())
    agreement = sum(v["doc_agreement"] * v["documents"] for v in lang.values()) / docs
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in figures.items() if k != "language"]
    rows += [[f"language {k}", f"docs {v['doc_agreement']:.4f} ({v['documents']}), chunks {v['chunk_agreement']:.4f} "
              f"({v['chunks']}), {v['docs_per_s']:.0f} docs/s, quality-quarantined {v['quality_quarantined']}"]
             for k, v in lang.items()]
    figures["settings"] = {"shingle_size": settings.shingle_size, "num_perm": settings.num_perm,
                           "jaccard_threshold": settings.jaccard_threshold, "seed": seed}
    checks = [Check("near-duplicate precision", float(figures["precision"]), 0.95, at_most=False),  # type: ignore[arg-type]
              Check("near-duplicate recall", float(figures["recall"]), 0.95, at_most=False),  # type: ignore[arg-type]
              Check("language agreement (xquad documents)", agreement, 0.99, at_most=False)]
    Report("near_duplicates", figures, checks).print(rows, ["figure", "value"])


if __name__ == "__main__":
    main()
