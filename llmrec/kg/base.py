"""Where a KG recommender's graph comes from.

The `llmrec baseline` recipe hands each model the prepared folder's data settings (`use_data`), so
`kg-ppr` and `kg-path` read the dataset's own KG (`triples.locate`) unless given a triple file
(`kg`, a path) or a ready `KnowledgeGraph` (`graph`, as tests and `llmrec explain --kg` do).
"""

from __future__ import annotations

from llmrec.config import DataConfig
from llmrec.errors import ConfigError
from llmrec.kg import triples
from llmrec.kg.graph import KnowledgeGraph


class KGModel:
    """Mixin: the KG source and its alignment with the training catalogue."""

    kg: str
    graph: KnowledgeGraph | None

    def use_data(self, data: DataConfig) -> None:
        """The dataset's own KG, unless a triple file or graph was given."""
        if not self.kg and self.graph is None:
            self.kg = str(triples.locate(data))

    def knowledge_graph(self, items: list[str]) -> KnowledgeGraph:
        if self.graph is not None:
            if self.graph.items != items:
                raise ConfigError("the given knowledge graph was built for another catalogue")
            return self.graph
        if not self.kg:
            raise ConfigError(f"{type(self).__name__}: no knowledge graph; pass kg=<triple file> or call "
                              "use_data(<data settings>) first")
        self.graph = KnowledgeGraph.build(triples.read(self.kg), items)
        return self.graph
