"""Retrieval v2 on the real Open-i reports, every method in one run: is hybrid search better than the
strongest simple baselines, on full-report queries and on short educator queries?

    python benchmarks/bench_retrieval.py --data ../shared/data/openi/NLMCXR_reports.tgz \
        --model runs/cpu-minilm --store runs/bench-retrieval/store [--write-fusion]

1. Index every report with the checkpoint (``cxrsearch index``'s library call; resumable: a second
   run reuses the collection).
2. **Tune** the fusion of the hybrid text query on **val only**, over two grids: weighted RRF
   (``GRID``) and the linear fusion (``LINEAR_GRID``: the weighted sum of the normalised component
   scores, :func:`cxrsearch.search.modes.fusion_coefficients`). Val reports are the queries against
   the train pool, plus the short-query **dev** set; the objective is the mean of their strict P@10.
   ``--write-fusion`` records the chosen fusion and weights in ``fusion.json`` beside the checkpoint
   (what ``cxrsearch search`` then uses). The test split is never looked at while choosing; the
   laterality dev queries are printed for the chosen weights, not used to choose.
3. **Report** on the test split, every method on the same queries:
   ``random``, ``bm25s`` (bm25s, the classic baseline), ``qdrant-bm25`` (our sparse vectors alone),
   ``dense`` (the model's text vectors alone), ``labels`` (the model's label-probability vectors
   alone), ``tfidf-lr`` (TF-IDF + per-label logistic regression, ranking by cosine of predicted
   label probabilities: supervised on the same MeSH labels that define relevance, like the model,
   and fitted on the model's own training texts, finding sentences included when it had them),
   ``hybrid`` (all components, weights 1) and ``hybrid-tuned``.
   On short queries one more row, ``label-oracle``, is a ceiling, not a method: it is told each
   query's label and ranks the studies by the model's stored probability of that label (the
   ``label_probs`` vector). It shows how much of a short-query miss is query understanding (the
   gap between a method and the oracle) and how much is the model's ranking against MeSH relevance
   (the gap between the oracle and 1.0).
   - full-report queries (test studies vs the train pool, strict relevance), subsets ``all``,
     ``novel`` (no word-for-word identical report in the pool) and ``non-normal``;
   - short queries (``cxrsearch/evaluate/queries/short-v1.json``, test half), against every indexed
     study, relevant when the study's MeSH labels hold the query's label, no filters;
   - laterality queries (:mod:`cxrsearch.evaluate.side_queries`, test half: "left pleural effusion"),
     against every indexed study: P@10 of the label on the asked side, and of the label on any side.

Every store query is :func:`cxrsearch.search.modes.run_query`, the one ``cxrsearch search`` sends.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from cxrsearch.data.openi import load_studies
from cxrsearch.evaluate.baselines import bm25_rankings, cosine_rankings, fit_label_model, random_rankings
from cxrsearch.evaluate.metrics import mean_metrics
from cxrsearch.evaluate.relevance import Pool, Query, label_counts, primary_label
from cxrsearch.evaluate.short_queries import load_short_queries
from cxrsearch.evaluate.side_queries import side_queries, sided_labels
from cxrsearch.evaluate.subsets import subset_masks
from cxrsearch.index import IndexOptions, index_studies
from cxrsearch.model.encode import Encoder
from cxrsearch.model.train_data import with_finding_sentences
from cxrsearch.search.modes import FUSION_FILE, FusionWeights, encode_queries, fusion_weights, query_text, run_query
from cxrsearch.store.base import RRF_K, Filter
from cxrsearch.store.edge import EdgeStore

COLLECTION = "bench-retrieval"
DEPTH = 10
FETCH = 40
ALONE = {
    "dense": {"text": 1, "bm25": 0, "labels": 0},
    "qdrant-bm25": {"text": 0, "bm25": 1, "labels": 0},
    "labels": {"text": 0, "bm25": 0, "labels": 1},
    "hybrid": {"text": 1, "bm25": 1, "labels": 1},
}
GRID = {"text": (0.25, 0.5, 1.0, 2.0), "bm25": (0.0, 0.25, 0.5, 1.0, 2.0), "labels": (0.5, 1.0, 2.0, 4.0, 8.0)}
"""The weighted-RRF grid."""
LINEAR_GRID = {"text": (0.0, 0.05, 0.1, 0.2, 0.4), "bm25": (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5), "labels": (1.0,)}
"""The linear-fusion grid (only the ratios of its weights matter: ``labels`` stays 1)."""
GRIDS = {"rrf": GRID, "linear": LINEAR_GRID}


def _dedupe(hits, own: str | None) -> list[str]:
    out: list[str] = []
    for hit in hits:
        uid = str(hit.payload["study_id"])
        if uid != own and uid not in out:
            out.append(uid)
            if len(out) == DEPTH:
                break
    return out


def _store_rankings(store, vectors, uids, flt_of, weights: FusionWeights) -> list[list[str]]:
    return [
        _dedupe(run_query(store, COLLECTION, "text", vec, flt_of(uid), FETCH, weights), uid)
        for vec, uid in zip(vectors, uids)
    ]


def _unfiltered_rankings(store, vectors, weights: FusionWeights) -> list[list[str]]:
    """Rankings of every indexed study, no filter (short and laterality queries)."""
    return _store_rankings(store, vectors, [None] * len(vectors), lambda uid: None, weights)


def _p10(pool: Pool, queries: list[Query], rankings) -> float:
    judged = [pool.judge(q, r, "strict", DEPTH) for q, r in zip(queries, rankings)]
    return float(mean_metrics(judged, (DEPTH,))["P@10"])


def _side_p10(queries, rankings, sided: dict[str, frozenset], any_side: bool) -> float:
    """Mean P@10 of laterality queries: the label on the asked side (``any_side``: on any side)."""
    scores = []
    for q, ranked in zip(queries, rankings):
        if any_side:
            hits = [any(label == q.label for label, _ in sided[uid]) for uid in ranked]
        else:
            hits = [(q.label, q.side) in sided[uid] for uid in ranked]
        scores.append(sum(hits) / DEPTH)
    return float(np.mean(scores))


def _label_oracle(store, vocab: list[str], queries) -> list[list[str]]:
    """Per short query, the studies ranked by the model's stored probability of the query's own label."""
    studies, probs = [], []
    for point in store.scroll(COLLECTION, with_vectors=True):
        studies.append(str(point.payload["study_id"]))
        probs.append(np.asarray(point.vectors["label_probs"], dtype=np.float64))
    matrix = np.stack(probs)
    rankings = []
    for query in queries:
        order = np.argsort(-matrix[:, vocab.index(query.primary)], kind="stable")
        rankings.append(list(dict.fromkeys(studies[i] for i in order[: 4 * DEPTH]))[:DEPTH])
    return rankings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument(
        "--write-fusion", action="store_true", help="record the val-tuned weights beside the checkpoint"
    )
    args = parser.parse_args()
    started = time.perf_counter()

    studies = [s for s in load_studies(args.data) if s.report_text()]
    by_uid = {s.uid: s for s in studies}
    encoder = Encoder(args.model)
    vocab = list(encoder.labels)
    store = EdgeStore(args.store)
    try:
        t0 = time.perf_counter()
        report = index_studies(IndexOptions(source=args.data, collection=COLLECTION, batch_size=64), store, encoder)
        print(f"indexed {report.count} points ({report.indexed} now) in {time.perf_counter() - t0:.0f} s")
        bm25 = store.collection_info(COLLECTION).schema.bm25
        train = [s for s in studies if s.split == "train"]
        train_counts = label_counts(s.labels for s in train)
        pool_uids = [s.uid for s in train]
        pool = Pool(pool_uids, [s.labels for s in train], vocab)
        pool_texts = [s.report_text() for s in train]
        everything = Pool([s.uid for s in studies], [s.labels for s in studies], vocab)

        def queries_of(split: str) -> list[Query]:
            out = []
            for s in studies:
                if s.split == split and s.labels:
                    primary = primary_label(s.labels, train_counts, vocab)
                    q = Query(s.uid, s.labels, primary)
                    if primary is not None and pool.gains(q, "strict").any():
                        out.append(q)
            return out

        t0 = time.perf_counter()
        sets = {}
        for split in ("val", "test"):
            qs = queries_of(split)
            texts = [query_text(by_uid[q.uid].report_text()) for q in qs]
            sets[split] = (qs, texts, encode_queries(encoder, "text", texts, batch_size=64, bm25=bm25))
        shorts = {}
        for split in ("dev", "test"):
            sq = load_short_queries(split, vocab)
            texts = [query_text(q.text) for q in sq]
            shorts[split] = (
                [Query(f"short:{q.id}", (q.label,), q.label) for q in sq],
                texts,
                encode_queries(encoder, "text", texts, batch_size=64, bm25=bm25),
            )
        sided = {s.uid: sided_labels(s.mesh_major) for s in studies}
        laterality = {}
        for split in ("dev", "test"):
            lq = side_queries([s.mesh_major for s in studies], split=split)
            texts = [query_text(q.text) for q in lq]
            laterality[split] = (lq, texts, encode_queries(encoder, "text", texts, batch_size=64, bm25=bm25))
        print(f"encoded queries in {time.perf_counter() - t0:.0f} s")

        def full(split: str, weights: FusionWeights) -> float:
            qs, _, vecs = sets[split]
            return _p10(
                pool,
                qs,
                _store_rankings(
                    store,
                    vecs,
                    [q.uid for q in qs],
                    lambda uid: Filter(split="train", exclude_study_ids=(uid,)),
                    weights,
                ),
            )

        def short(split: str, weights: FusionWeights) -> float:
            qs, _, vecs = shorts[split]
            return _p10(everything, qs, _unfiltered_rankings(store, vecs, weights))

        def side(split: str, weights: FusionWeights) -> tuple[float, float]:
            """Laterality P@10: the finding on the asked side, and on any side."""
            lq, _, vecs = laterality[split]
            ranked = _unfiltered_rankings(store, vecs, weights)
            return _side_p10(lq, ranked, sided, False), _side_p10(lq, ranked, sided, True)

        # -- tuning on val + dev only -------------------------------------------------------------
        t0 = time.perf_counter()
        base = fusion_weights(encoder).weights  # image 0 for a text-only checkpoint
        scored = []
        for fusion, grid in GRIDS.items():
            for text_w, bm25_w, labels_w in itertools.product(grid["text"], grid["bm25"], grid["labels"]):
                weights = FusionWeights({**base, "text": text_w, "bm25": bm25_w, "labels": labels_w}, "grid", fusion)
                v, d = full("val", weights), short("dev", weights)
                scored.append(((v + d) / 2, v, d, weights))

        # ties (to 4 decimals) go to the weighting that keeps more components: a component that does
        # not move P@10 still orders what P@10 does not judge (wording, negations for BM25)
        def rank_key(row):
            return (round(row[0], 4), sum(w > 0 for w in row[3].weights.values()))

        best_of = {f: max((r for r in scored if r[3].fusion == f), key=rank_key) for f in GRIDS}
        best = max(best_of.values(), key=rank_key)
        for fusion, row in best_of.items():
            on_side, any_side = side("dev", row[3])
            print(
                f"best {fusion}: {dict(row[3].weights)} (val P@10 {row[1]:.3f}, dev short P@10 {row[2]:.3f}, "
                f"dev laterality P@10 {on_side:.3f} on the side / {any_side:.3f} any side)"
            )
        tuned = FusionWeights(
            dict(best[3].weights),
            f"tuned on val reports + short-v1 dev (P@10 {best[1]:.3f} / {best[2]:.3f}), benchmarks/bench_retrieval.py",
            best[3].fusion,
        )
        print(
            f"tuned {len(scored)} weightings on val in {time.perf_counter() - t0:.0f} s: {tuned.fusion} "
            f"{dict(tuned.weights)} (val P@10 {best[1]:.3f}, dev short P@10 {best[2]:.3f})"
        )
        if args.write_fusion:
            info = encoder.checkpoint.info
            record = {
                "fingerprint": info.fingerprint,
                "fusion": tuned.fusion,
                "rrf_k": RRF_K,
                "weights": dict(tuned.weights),
                "source": tuned.source,
                "grid": GRIDS[tuned.fusion],
                "objective": "mean strict P@10 of val reports vs train and short-v1 dev",
            }
            (info.path / FUSION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            print(f"wrote {info.path / FUSION_FILE}")

        # -- test: every method on the same queries ------------------------------------------------
        qs, texts, vecs = sets["test"]
        uids = [q.uid for q in qs]
        masks = subset_masks(
            uids, [by_uid[u].report_text() for u in uids], [by_uid[u].labels for u in uids], pool_texts
        )
        t0 = time.perf_counter()
        training = encoder.checkpoint.info.extra.get("training") or {}
        fit_texts, fit_labels = pool_texts, [s.labels for s in train]
        if training.get("finding_sentences"):  # the baseline reads what the model read
            fit_texts, fit_labels = with_finding_sentences(fit_texts, fit_labels)
        label_model = fit_label_model(fit_texts, fit_labels, vocab)
        pool_probs, query_probs = label_model.predict(pool_texts), label_model.predict(texts)
        rankings = {
            "random": random_rankings(pool_uids, uids, DEPTH),
            "bm25s": bm25_rankings(pool_uids, pool_texts, uids, texts, DEPTH),
            "tfidf-lr": cosine_rankings(pool_uids, pool_probs, uids, query_probs, DEPTH),
            "tfidf-lr-dot": cosine_rankings(pool_uids, pool_probs, uids, query_probs, DEPTH, normalise=False),
        }
        print(f"baselines in {time.perf_counter() - t0:.1f} s")
        methods = {name: FusionWeights({**base, **w}, name) for name, w in ALONE.items()}
        for fusion, row in best_of.items():  # the val-best of each fusion; the chosen one is hybrid-tuned
            if row is not best:
                methods[f"hybrid-{fusion} (val-best, not chosen)"] = row[3]
        methods["hybrid-tuned"] = tuned
        for name, weights in methods.items():
            rankings[name] = _store_rankings(
                store, vecs, uids, lambda uid: Filter(split="train", exclude_study_ids=(uid,)), weights
            )
        all_uids = [s.uid for s in studies]
        all_texts = [s.report_text() for s in studies]
        all_probs = label_model.predict(all_texts)

        def everything_rankings(query_ids: list[str], query_texts: list[str], vecs) -> dict[str, list[list[str]]]:
            """Every method's rankings of all indexed studies for queries without filters."""
            probs = label_model.predict(query_texts)
            out = {
                "random": random_rankings(all_uids, query_ids, DEPTH),
                "bm25s": bm25_rankings(all_uids, all_texts, query_ids, query_texts, DEPTH),
                "tfidf-lr": cosine_rankings(all_uids, all_probs, query_ids, probs, DEPTH),
                "tfidf-lr-dot": cosine_rankings(all_uids, all_probs, query_ids, probs, DEPTH, normalise=False),
            }
            for name, weights in methods.items():
                out[name] = _unfiltered_rankings(store, vecs, weights)
            return out

        sq, stexts, svecs = shorts["test"]
        short_rankings = everything_rankings([q.uid for q in sq], stexts, svecs)
        oracle = _label_oracle(store, vocab, sq)
        lq, ltexts, lvecs = laterality["test"]
        side_rankings = everything_rankings([f"side:{q.text}" for q in lq], ltexts, lvecs)

        print(f"\nstrict P@10, test split (model {args.model}, {time.perf_counter() - started:.0f} s in all)\n")
        header = (
            f"| method | all ({masks['all'].sum()}) | novel ({masks['novel'].sum()}) | "
            f"non-normal ({masks['non-normal'].sum()}) | short queries ({len(sq)}) | "
            f"laterality ({len(lq)}): on the side | laterality: any side |"
        )
        print(header)
        print("|---|---|---|---|---|---|---|")
        for name in rankings:
            cells = []
            for subset in ("all", "novel", "non-normal"):
                keep = np.flatnonzero(masks[subset])
                cells.append(_p10(pool, [qs[i] for i in keep], [rankings[name][i] for i in keep]))
            cells.append(_p10(everything, sq, short_rankings[name]))
            cells += [_side_p10(lq, side_rankings[name], sided, False), _side_p10(lq, side_rankings[name], sided, True)]
            print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        print(f"| label-oracle (a ceiling, not a method) | - | - | - | {_p10(everything, sq, oracle):.3f} | - | - |")
        print(f"\nchosen: {tuned.fusion} {dict(tuned.weights)}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
