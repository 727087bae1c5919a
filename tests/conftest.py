"""Shared fixtures: the real embedded ML-100K (fetched once into $LLMREC_HOME) and small hand-made data."""

from __future__ import annotations

import pytest

from llmrec import assets
from llmrec.config import DataConfig
from llmrec.data.loaders import load_dataset
from llmrec.data.split import leave_one_out


@pytest.fixture(scope="session")
def ml100k():
    assets.fetch("ml-100k")
    return load_dataset(DataConfig())


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    return leave_one_out(ml100k)


def write_recbole(folder, name, inter_rows, item_rows,
                  inter_header="user_id:token\titem_id:token\trating:float\ttimestamp:float",
                  item_header="item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"):
    """Write a tiny RecBole atomic dataset and return its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text("\n".join([inter_header, *inter_rows]) + "\n")
    (folder / f"{name}.item").write_text("\n".join([item_header, *item_rows]) + "\n")
    return folder
