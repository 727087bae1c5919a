"""Item text: the item template rendered per item, the text the content encoders read.

An item template is `templates/item/<name>_vN.j2` (or any `.j2` path) opening with a `{# #}`
header whose `style` is `item`. Its body sees `item` (id, title, year, genres and the items
file's other text fields), `fields` (those other fields only) and `item_noun`. It renders in the
prompt templates' sandbox with StrictUndefined, so a typo is an error naming the file and line,
never an empty text, and its sha256 is part of the vector cache's key.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmrec.data.dataset import Item
from llmrec.prompts.render import Template, load_template

STYLE = "item"
DEFAULT_TEMPLATE = "item/text_v1"


def load_item_template(name_or_path: str = DEFAULT_TEMPLATE) -> Template:
    """A shipped item template by name (`item/text_v1`) or any `.j2` file by path."""
    return load_template(name_or_path, STYLE)


def item_texts(template: Template, items: Iterable[Item], item_noun: str = "movie") -> list[str]:
    """One text per item, in the order given."""
    return [template.render(item=it.to_dict(), fields=dict(it.fields), item_noun=item_noun) for it in items]
