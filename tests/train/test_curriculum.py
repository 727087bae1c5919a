"""LLaRA's curriculum: which prompt (text-only twin or hybrid) each training example uses."""

import numpy as np

import datasets
from llmrec.train.finetune import Curriculum, collate


def _rows(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": [[7, k] for k in range(n)], "labels": [[-100, 1]] * n,
                                       "text_input_ids": [[3, k] for k in range(n)], "text_labels": [[-100, 2]] * n})


def _hybrid(c: Curriculum) -> np.ndarray:
    return np.array([c[k]["input_ids"][0] == 7 for k in range(len(c))])


def test_hybrid_share_grows_linearly_over_the_run():
    data = _rows(400)
    first, second = Curriculum(data, 0, 800, seed=0), Curriculum(data, 400, 800, seed=0)  # two epochs, one run
    hybrid = np.concatenate([_hybrid(first), _hybrid(second)])
    quarters = hybrid.reshape(4, 200).mean(1)  # expected shares 1/8, 3/8, 5/8, 7/8
    assert np.all(np.abs(quarters - [0.125, 0.375, 0.625, 0.875]) < 0.1), quarters
    assert not hybrid[0]  # the first example is always text-only


def test_draws_are_reproducible_and_the_twin_columns_are_dropped():
    data = _rows(50)
    a, b = Curriculum(data, 0, 50, seed=3), Curriculum(data, 0, 50, seed=3)
    assert [a[k] for k in range(50)] == [b[k] for k in range(50)]  # a resumed run sees the same prompts
    assert not np.array_equal(_hybrid(a), _hybrid(Curriculum(data, 0, 50, seed=4)))
    row = a[10]
    assert set(row) == {"input_ids", "labels"}
    # a text row keeps its own labels: the answer is found from them
    text = next(a[k] for k in range(50) if a[k]["input_ids"][0] == 3)
    assert text["labels"] == [-100, 2]
    batch = collate(0)([a[k] for k in range(4)])
    assert batch["input_ids"].shape == (4, 2)


def test_past_the_span_every_example_is_hybrid():
    assert _hybrid(Curriculum(_rows(30), 100, 100, seed=0)).all()
