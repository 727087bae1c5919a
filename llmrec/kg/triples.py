"""Reading knowledge-graph triples: RecBole `.kg` + `.link` files and plain CSV/TSV triple files.

RecBole ships a KG with several of its datasets (ML-100K's is a Freebase extract, Zhao et al.
2019, "KB4Rec"): `<name>.kg` holds `head_id relation_id tail_id` triples between Freebase ids and
`<name>.link` maps `item_id` to the item's entity. A plain triple file has a `head, relation, tail`
row per fact (header optional, comma- or tab-separated); without a link file, a head or tail equal
to an item id of the dataset is that item, so hand-written files can say `50,director,George Lucas`.
Every malformed row is an error naming the file, line and field, never a silently dropped fact.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from llmrec.config import DataConfig
from llmrec.data.loaders import read_atomic
from llmrec.errors import DataError

TRIPLE_FIELDS = ("head", "relation", "tail")

# Freebase film relations read as nouns ("share director X"); others fall back to their last word.
_ALIASES = {
    "directed by": "director", "produced by": "producer", "written by": "writer",
    "cinematography": "cinematographer", "production companies": "production company",
    "rating": "content rating", "subjects": "subject",
    "sequel": "sequel or prequel", "prequel": "sequel or prequel",  # one fact, stated from either film
}


def relation_name(raw: str) -> str:
    """A readable name for a relation id: `film.film.directed_by` and its inverse
    `film.director.film` both read "director"; ids without dots are kept as they are.

    Inverse pairs reading the same is what lets the graph count each fact once.
    """
    parts = raw.split(".")
    if len(parts) < 3:
        return raw.replace("_", " ")
    word = parts[-1]
    if word.startswith("film") and parts[-2] != "film":  # film.<role>.film(s...): the inverse of film.film.<role>
        word = parts[-2]
    word = word.removeprefix("film_").replace("_", " ")
    return _ALIASES.get(word, word)


@dataclass
class Triples:
    """Facts as read, before they meet a catalogue.

    `link` maps item ids to entity ids (empty: an item is named by its own id); `names` maps
    entity ids to display names where the source has them; `ids_only` says entities are opaque
    ids with no names (RecBole's Freebase `m.0...` ids), while a plain triple file's entities
    are their own names.
    """

    heads: list[str]
    relations: list[str]
    tails: list[str]
    source: str
    link: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    ids_only: bool = False

    def __len__(self) -> int:
        return len(self.heads)


def _check(path: Path, line: int, values: list[str], names: tuple[str, ...]) -> None:
    for name, value in zip(names, values):
        if not value.strip():
            raise DataError(f"{path}:{line}: field {name!r} is empty")


def read_recbole(kg_path: Path, link_path: Path | None = None) -> Triples:
    """`<name>.kg` (head_id, relation_id, tail_id) and, when given, `<name>.link` (item_id, entity_id)."""
    cols, rows = read_atomic(kg_path)
    want = ("head_id", "relation_id", "tail_id")
    if tuple(cols) != want:
        raise DataError(f"{kg_path}:1: expected the columns {', '.join(want)}; got {', '.join(cols)}")
    heads, rels, tails = [], [], []
    for n, (h, r, t) in rows:
        _check(kg_path, n, [h, r, t], want)
        heads.append(h)
        rels.append(r)
        tails.append(t)
    link: dict[str, str] = {}
    if link_path is not None:
        cols, rows = read_atomic(link_path)
        if tuple(cols) != ("item_id", "entity_id"):
            raise DataError(f"{link_path}:1: expected the columns item_id, entity_id; got {', '.join(cols)}")
        for n, (item, entity) in rows:
            _check(link_path, n, [item, entity], ("item_id", "entity_id"))
            if item in link and link[item] != entity:
                raise DataError(f"{link_path}:{n}: field 'entity_id': item {item!r} is linked twice "
                                f"({link[item]!r} and {entity!r})")
            link[item] = entity
    return Triples(heads, rels, tails, str(kg_path), link, ids_only=True)


def read_table(path: Path) -> Triples:
    """A CSV or TSV file of `head, relation, tail` rows; an optional header row names exactly those."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    with open(path, encoding="utf-8-sig", newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        heads, rels, tails = [], [], []
        for n, row in enumerate(csv.reader(f, delimiter=delimiter), 1):
            if not row or not any(v.strip() for v in row):
                continue
            if n == 1 and [v.strip().lower() for v in row] == list(TRIPLE_FIELDS):
                continue
            if len(row) != 3:
                raise DataError(f"{path}:{n}: expected 3 {'tab' if delimiter == chr(9) else 'comma'}-separated "
                                f"fields (head, relation, tail), got {len(row)}")
            row = [v.strip() for v in row]
            _check(path, n, row, TRIPLE_FIELDS)
            heads.append(row[0])
            rels.append(row[1])
            tails.append(row[2])
    if not heads:
        raise DataError(f"{path}: no triples")
    return Triples(heads, rels, tails, str(path))


def read(path: str | Path) -> Triples:
    """A RecBole `.kg` file (its `.link` beside it is read when present) or a CSV/TSV triple file."""
    path = Path(path)
    if path.suffix == ".kg":
        link = path.with_suffix(".link")
        return read_recbole(path, link if link.is_file() else None)
    return read_table(path)


def locate(data: DataConfig) -> Path:
    """The dataset's own KG: `<folder>/<name>.kg` for RecBole data (the embedded ML-100K included),
    else `<name>.kg.csv` or `<name>.kg.tsv` beside the items file."""
    if data.format == "recbole":
        if data.path:
            folder = Path(data.path)
        else:
            from llmrec import assets

            folder = assets.fetch(data.dataset, log=lambda *_: None)
        path = folder / f"{data.dataset}.kg"
        if not path.is_file():
            raise DataError(f"no knowledge graph for dataset {data.dataset!r}: {path} not found")
        return path
    folder = Path(data.items_path).parent
    for ext in ("csv", "tsv"):
        path = folder / f"{data.dataset}.kg.{ext}"
        if path.is_file():
            return path
    raise DataError(f"no knowledge graph for dataset {data.dataset!r}: neither {data.dataset}.kg.csv nor "
                    f"{data.dataset}.kg.tsv in {folder} (rows: head, relation, tail)")
