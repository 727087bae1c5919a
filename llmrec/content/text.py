"""Item text: the item template rendered per item, the text the content encoders read.

An item template is `templates/item/<name>_vN.j2` (or any `.j2` path) opening with a `{# #}`
header whose `style` is `item`. Its body sees `item` (id, title, year, genres and the items
file's other text fields), `fields` (those other fields only) and `item_noun`. It renders in the
prompt templates' sandbox with StrictUndefined, so a typo is an error naming the file and line,
never an empty text, and its sha256 is part of the vector cache's key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmrec.data.dataset import Item
from llmrec.errors import TemplateError
from llmrec.prompts.render import Template, parse_header, templates_dir

STYLE = "item"
DEFAULT_TEMPLATE = "item/text_v1"


def load_item_template(name_or_path: str = DEFAULT_TEMPLATE) -> Template:
    """A shipped item template by name (`item/text_v1`) or any `.j2` file by path."""
    p = Path(name_or_path)
    path = p if p.suffix == ".j2" or p.is_file() else templates_dir() / f"{name_or_path}.j2"
    if not path.is_file():
        shipped = sorted(f"{STYLE}/{q.stem}" for q in (templates_dir() / STYLE).glob("*.j2"))
        raise TemplateError(f"item template {name_or_path!r} not found (looked for {path}); shipped: {shipped}")
    source = path.read_text(encoding="utf-8")
    header = parse_header(path, source)
    if header.get("style") != STYLE:
        raise TemplateError(f"{path}: an item template's header 'style' must be {STYLE!r}; "
                            f"got {header.get('style', '')!r}")
    return Template(str(name_or_path), path.resolve(), STYLE, False, header, source)


def item_texts(template: Template, items: Iterable[Item], item_noun: str = "movie") -> list[str]:
    """One text per item, in the order given."""
    return [template.render(item=it.to_dict(), fields=dict(it.fields), item_noun=item_noun) for it in items]
