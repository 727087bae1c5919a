import math

import numpy as np
import pytest

from llmrec.eval.metrics import aggregate, expected_rank, user_metrics


def test_expected_rank_with_and_without_ties():
    assert expected_rank(np.array([0.1, 0.9, 0.5]), 1) == 1.0
    assert expected_rank(np.array([0.1, 0.9, 0.5]), 0) == 3.0
    # positive tied with two others, one strictly better: ranks 2..4 -> 3
    assert expected_rank(np.array([0.7, 0.5, 0.5, 0.5, 0.1]), 1) == 3.0
    assert expected_rank(np.full(20, 0.3), 7) == 10.5  # all tied: the middle of 1..20
    with pytest.raises(ValueError, match="NaN"):
        expected_rank(np.array([np.nan, 1.0]), 0)


def test_user_metrics_by_hand():
    m = user_metrics(1.0)
    assert m == {"HR@1": 1.0, "HR@5": 1.0, "HR@10": 1.0, "NDCG@5": 1.0, "NDCG@10": 1.0, "MRR": 1.0,
                 "Recall@5": 1.0, "Recall@10": 1.0}
    m = user_metrics(3.0)
    assert m["HR@1"] == 0.0 and m["HR@5"] == 1.0
    assert m["NDCG@5"] == pytest.approx(0.5)  # 1/log2(4)
    assert m["MRR"] == pytest.approx(1 / 3)
    m = user_metrics(7.0)
    assert m["NDCG@5"] == 0.0 and m["NDCG@10"] == pytest.approx(1 / 3)  # 1/log2(8)
    m = user_metrics(10.5)  # a tie straddling the cut-off counts at its expected rank
    assert m["HR@10"] == 0.0 and m["NDCG@10"] == 0.0 and m["MRR"] == pytest.approx(1 / 10.5)
    m = user_metrics(2.5)
    assert m["NDCG@5"] == pytest.approx(1 / math.log2(3.5))


def test_aggregate_means_and_counts():
    out = aggregate([1.0, 3.0, 7.0, 20.0])
    assert out["users"] == 4
    assert out["HR@5"] == 0.5 and out["HR@10"] == 0.75
    assert out["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 7 + 1 / 20) / 4)
    assert aggregate([]) == {"users": 0}
