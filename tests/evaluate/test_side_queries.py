"""Laterality queries: made from the MeSH side qualifiers, relevance on the asked side."""

from __future__ import annotations

from cxrsearch.data.openi import load_studies
from cxrsearch.evaluate.side_queries import SideQuery, side_queries, sided_labels


def test_sided_labels_read_the_side_qualifier_of_each_term():
    assert sided_labels(["Pleural Effusion/left/small", "Cardiomegaly/mild"]) == {("pleural effusion", "left")}
    assert sided_labels(["Opacity/lung/base/bilateral", "Pulmonary Atelectasis/base/right"]) == {
        ("lung opacity", "bilateral"),
        ("atelectasis", "right"),
    }
    assert sided_labels(["normal"]) == set() and sided_labels(["Spine/degenerative/left"]) == set()  # no label


def test_pairs_need_enough_studies_and_alternate_dev_and_test():
    corpus = [["Pleural Effusion/left"]] * 3 + [["Pleural Effusion/right"]] * 2 + [["Nodule/right"]] * 3
    queries = side_queries(corpus, min_studies=3)
    assert queries == [SideQuery("nodule", "right", "dev"), SideQuery("pleural effusion", "left", "test")]
    assert queries[1].text == "left pleural effusion"
    assert side_queries(corpus, min_studies=3, split="test") == [queries[1]]


def test_the_open_i_reports_give_31_pairs(reports_tgz):
    studies = list(load_studies(reports_tgz))
    queries = side_queries([s.mesh_major for s in studies if s.report_text()])
    assert len(queries) == 31
    assert SideQuery("pleural effusion", "right", "test") in queries and all(q.label != "normal" for q in queries)
