"""Load and render prompt templates.

A template is `templates/<style>/<name>_vN.j2` (or any `.j2` path) opening with a `{# #}` header
of `key: value` lines:

    style:   title | letters | yesno          (how candidates are scored, see DESIGN.md)
    chat:    true | false                     (wrap the text as a user turn with the chat template)
    target:  Jinja for the scored text of one item (title style; default "{{ item.title }}")
    answer:  prose description of the answer format
    variables: prose list of the variables used

Rendering uses StrictUndefined: a missing variable, an unknown filter or a syntax error is a
TemplateError naming the file and line, never a silently empty prompt.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from llmrec.errors import TemplateError

STYLES = ("title", "letters", "yesno")
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
_HEADER = re.compile(r"\A\s*\{#(.*?)#\}", re.DOTALL)


def _env(search_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The template line of a render-time error: Jinja rewrites tracebacks to point at it."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and Path(frame.filename).resolve() == Path(filename).resolve():
            return frame.lineno
    return None


@dataclass(frozen=True)
class Template:
    """A parsed template file; `name` is `<style>/<stem>` for shipped ones, the path otherwise."""

    name: str
    path: Path
    style: str
    chat: bool
    header: dict[str, str] = field(compare=False)
    source: str = field(repr=False, compare=False, default="")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def render(self, **variables: Any) -> str:
        """Render to the prompt text (before any chat template). Errors name file and line."""
        env = _env(self.path.parent)
        try:
            tpl = env.get_template(self.path.name)
            return tpl.render(**variables).strip("\n") if not self.chat else tpl.render(**variables).strip()
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{self.path}:{e.lineno}: {e.message}") from None
        except jinja2.UndefinedError as e:
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: {e.message} (available: {sorted(variables)})") from None
        except Exception as e:  # noqa: BLE001 - any error inside the template, re-raised with its line
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: {type(e).__name__}: {e}") from None

    def render_target(self, item: dict[str, Any]) -> str:
        """The scored text of one candidate (title style)."""
        expr = self.header.get("target", "{{ item.title }}")
        try:
            return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(expr).render(item=item)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self.path}: header 'target' {expr!r}: {e}") from None


def parse_header(path: Path, source: str) -> dict[str, str]:
    m = _HEADER.match(source)
    if not m:
        raise TemplateError(f"{path}:1: a template must open with a {{# ... #}} header giving its style")
    header: dict[str, str] = {}
    for line in m.group(1).splitlines():
        if ":" in line and not line.startswith((" ", "\t")):
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    return header


def load_template(name_or_path: str) -> Template:
    """Load a shipped template by name (`title/next_item_v1`) or any `.j2` file by path."""
    p = Path(name_or_path)
    if p.suffix == ".j2" or p.is_file():
        path, name = p, str(p)
    else:
        path, name = TEMPLATES_DIR / f"{name_or_path}.j2", name_or_path
    if not path.is_file():
        raise TemplateError(f"template {name_or_path!r} not found (looked for {path}); "
                            f"shipped templates: {', '.join(list_templates())}")
    source = path.read_text(encoding="utf-8")
    header = parse_header(path, source)
    style = header.get("style", "")
    if style not in STYLES:
        raise TemplateError(f"{path}: header 'style' must be one of {list(STYLES)}; got {style!r}")
    chat = header.get("chat", "false").lower()
    if chat not in ("true", "false"):
        raise TemplateError(f"{path}: header 'chat' must be true or false; got {chat!r}")
    # Compile now so syntax errors and unknown filters surface before any model is loaded.
    try:
        _env(path.parent).get_template(path.name)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{e.lineno}: {e.message}") from None
    return Template(name, path.resolve(), style, chat == "true", header, source)


def list_templates() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATES_DIR).with_suffix("")) for p in TEMPLATES_DIR.rglob("*.j2"))
