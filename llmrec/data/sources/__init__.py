"""Published datasets by name: where each file comes from, how it is checked and converted.

A `Source` names its files (URL, sha256, size), licence, citation and a converter that streams
the upstream files into llmrec's two tables (`interactions.parquet`, `items.parquet`; see
`llmrec.data.sources.tables`). `llmrec datasets fetch NAME` downloads (or takes `--from FILE`),
checks and converts once into `$LLMREC_HOME/datasets/NAME/`; `llmrec prepare data.dataset=NAME`
then reads the converted tables with no other setting. The entries are in `catalog.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One upstream file. An archive maps the converter's roles to member paths (matched by their
    end, so a re-zipped copy without the top folder still reads); a plain file is its `role`."""

    url: str
    sha256: str = ""  # "": not published anywhere we could check; the first fetch records it
    size: int = 0  # bytes; 0: unknown
    role: str = ""  # plain file: the name the converter reads it by
    members: tuple[tuple[str, str], ...] = ()  # archive: (role, member path)
    name: str = ""  # the local file name; default: the URL's last part

    @property
    def filename(self) -> str:
        return self.name or self.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]

    def roles(self) -> list[str]:
        return [r for r, _ in self.members] or [self.role]


@dataclass(frozen=True)
class Source:
    """A registered dataset: what it is, where its files are, and which converter reads them."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    converter: str  # "module:function" in llmrec.data.sources, called as f(files, tables, options)
    licence: str
    citation: str
    homepage: str = ""
    item_noun: str = "item"
    published: str = ""  # the published size, e.g. "6,040 users, 3,706 items, 1,000,209 ratings"
    options: tuple[tuple[str, str], ...] = ()  # converter options (e.g. the category of a family)
    manual: str = ""  # non-empty: no direct download; how to obtain the files (then --from)
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def option(self, key: str, default: str = "") -> str:
        return dict(self.options).get(key, default)
