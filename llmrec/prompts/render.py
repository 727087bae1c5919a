"""Load and render prompt templates.

A template is `templates/<style>/<name>_vN.j2` (or any `.j2` path) opening with a `{# #}` header
of `key: value` lines:

    style:   title | letters | yesno          (how candidates are scored)
    chat:    true | false                     (wrap the text as a user turn with the chat template)
    target:  Jinja for the scored text of one item (title style; default "{{ item.title }}")
    answer:  prose description of the answer format
    variables: prose list of the variables used

Besides Jinja's built-ins, templates have one filter: `cf` marks where a collaborative vector goes
(`{{ h | cf }}` after an item, `{{ user | cf }}` for the user; see `llmrec/prompts/slots.py`).

Rendering uses StrictUndefined: a missing variable, an unknown filter or a syntax error is a
TemplateError naming the file and line, never a silently empty prompt.

Templates are untrusted input (a run may use a `.j2` file from anywhere), so bodies and the
`target` header run in Jinja's immutable sandbox: attribute access that could reach Python
internals (`__class__`, `__globals__`, ...) or mutate data is refused, and `include`/`extends`
only read files inside the template's own folder. A render's work is bounded too, so a template
cannot stall a job: `range()` gives at most MAX_RANGE items, one render runs at most
MAX_LOOP_STEPS loop iterations (nested and included loops together) within MAX_SECONDS and
writes at most MAX_CHARS characters; past a bound the render stops with a TemplateError.

The repository's `templates/` folder installs as the package data `llmrec.templates`, so shipped
templates are found the same way in a checkout, an editable install and a wheel.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import re
import time
import traceback
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmrec.errors import TemplateError
from llmrec.prompts.slots import cf_filter
from llmrec.registry import STYLES

_HEADER = re.compile(r"\A\s*\{#(.*?)#\}", re.DOTALL)
_DEFAULT_TARGET = "{{ item.title }}"
MAX_RANGE = 10_000  # items of one range() in a template (Jinja's sandbox allows 100,000)
MAX_LOOP_STEPS = 1_000_000  # loop iterations of one render
MAX_CHARS = 1_000_000  # characters of one rendered text
MAX_SECONDS = 10.0  # one render's time: the net for loops with slow bodies (a sort per iteration)


class RenderLimit(Exception):
    """A render went past one of the bounds above (turned into a TemplateError naming file and line)."""


@dataclass
class _Budget:
    """What is left to one render: loop iterations and time (only loops repeat work, so the loop
    guard checks both, every 256 iterations to stay cheap)."""

    steps: int
    deadline: float

    @classmethod
    def new(cls) -> _Budget:
        return cls(MAX_LOOP_STEPS, time.monotonic() + MAX_SECONDS)

    def check(self) -> None:
        if self.steps < 0:
            raise RenderLimit(f"more than {MAX_LOOP_STEPS:,} loop iterations in one render")
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"the render took more than {MAX_SECONDS:g} s")


# The budget of the render running in this thread (or task); None outside a render.
_budget: ContextVar[_Budget | None] = ContextVar("llmrec_template_budget", default=None)


def _range(*args: int) -> range:
    """The templates' `range`: Jinja's sandboxed one with the smaller MAX_RANGE."""
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise RenderLimit(f"range() of {len(r):,} items; a template may use at most {MAX_RANGE:,}")
    return r


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles every `for` loop to iterate through `_Sandbox.guard_loop`, which counts the render's
    iterations: range and output caps alone leave empty nested loops unbounded."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        guard = nodes.EnvironmentAttribute("guard_loop")
        if not node.recursive and not (isinstance(node.iter, nodes.Call) and node.iter.node == guard):
            node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def write(self, x: str) -> None:
        # A recursive loop iterates `reciter`, the argument of each `loop(...)` call: guard it there.
        super().write("environment.guard_loop(reciter)" if x == "reciter" else x)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the bounded `range` and counted loops."""

    code_generator_class = _GuardedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _range

    @staticmethod
    def guard_loop(iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget.get() or _Budget.new()
        for x in iterable:
            budget.steps -= 1
            if not budget.steps & 255:
                budget.check()
            yield x


def _render_bounded(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """`template.render(**variables)` within MAX_CHARS of output and the loop and time budget; the
    budget lives in a context variable, so concurrent renders in threads each have their own."""
    token = _budget.set(_Budget.new())
    try:
        parts, size = [], 0
        chunks = template.generate(**variables)
        for part in chunks:
            size += len(part)
            if size > MAX_CHARS:
                chunks.close()
                raise RenderLimit(f"the rendered text passes {MAX_CHARS:,} characters")
            parts.append(part)
        return "".join(parts)
    finally:
        _budget.reset(token)


class _FolderLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that also refuses files reached through a link leading out of the folder.

    FileSystemLoader already rejects `..` in names; a symlink inside the folder is the other way out.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.root = folder.resolve()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(self.root):
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


@functools.lru_cache(maxsize=64)
def _env(search_dir: Path) -> ImmutableSandboxedEnvironment:
    """One sandboxed environment per template folder (compiled templates are cached and reloaded on edit)."""
    env = _Sandbox(
        loader=_FolderLoader(search_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["cf"] = cf_filter
    return env


@functools.lru_cache(maxsize=1)
def _expr_env() -> ImmutableSandboxedEnvironment:
    """The sandbox for header expressions such as `target` (no loader: they cannot include files)."""
    return _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False)


def templates_dir() -> Path:
    """The folder of the shipped templates: the package data `llmrec.templates`."""
    try:
        root = importlib.resources.files("llmrec.templates")
    except ModuleNotFoundError:
        # An editable install made before templates/ became package data: read the checkout.
        root = Path(__file__).resolve().parents[2] / "templates"
        if not root.is_dir():
            raise TemplateError("the shipped templates are missing (no package llmrec.templates); "
                                "reinstall llmrec") from None
    if not isinstance(root, Path):
        raise TemplateError(f"the shipped templates must be installed as files, not inside an archive ({root})")
    return root


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The template line of a render-time error: Jinja rewrites tracebacks to point at it."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and Path(frame.filename).resolve() == Path(filename).resolve():
            return frame.lineno
    return None


def _header_line(source: str, key: str) -> int:
    """1-based line of `key:` in the header (1 when absent: the header opens the file)."""
    for n, line in enumerate(source.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return n
        if "#}" in line:
            break
    return 1


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

    @property
    def end(self) -> str:
        """What follows an item's text in a title-style answer (header `end`): "" (nothing), a JSON
        string such as "\\n", or EOS (the tokenizer's end-of-sequence token). Scored with the text,
        it keeps a title that is the prefix of another from winning over the whole catalogue."""
        return parse_end(self.path, self.header.get("end", ""))

    @property
    def uses_cf(self) -> bool:
        """Whether the template places collaborative vectors (the `cf` filter)."""
        return re.search(r"\|\s*cf\b", self.source) is not None

    def render(self, **variables: Any) -> str:
        """Render to the prompt text (before any chat template). Errors name file and line."""
        env = _env(self.path.parent)
        try:
            text = _render_bounded(env.get_template(self.path.name), variables)
            return text.strip() if self.chat else text.strip("\n")
        except RenderLimit as e:
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}{'' if line is None else f':{line}'}: render stopped: {e}") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{e.filename or self.path}:{e.lineno}: {e.message}") from None
        except SecurityError as e:
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: unsafe access refused: {e}") from None
        except jinja2.TemplateNotFound as e:
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: cannot include {e.name!r}: only files inside "
                                f"{self.path.parent} can be included or extended") from None
        except jinja2.UndefinedError as e:
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: {e.message} (available: {sorted(variables)})") from None
        except Exception as e:  # noqa: BLE001 - any error inside the template, re-raised with its line
            line = _error_line(e, str(self.path))
            raise TemplateError(f"{self.path}:{line}: {type(e).__name__}: {e}") from None

    def render_target(self, item: dict[str, Any]) -> str:
        """The scored text of one candidate (title style)."""
        target = _compile_target(self.path, self.source, self.header)
        try:
            return _render_bounded(target, {"item": item})
        except RenderLimit as e:
            raise TemplateError(f"{self._target_where()}: render stopped: {e}") from None
        except SecurityError as e:
            raise TemplateError(f"{self._target_where()}: unsafe access refused: {e}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self._target_where()}: {e}") from None

    def _target_where(self) -> str:
        expr = self.header.get("target", _DEFAULT_TARGET)
        return f"{self.path}:{_header_line(self.source, 'target')}: header 'target' {expr!r}"


@functools.lru_cache(maxsize=64)
def _expression(expr: str) -> jinja2.Template:
    """A compiled header expression (it is rendered once per candidate, so compile it once)."""
    return _expr_env().from_string(expr)


def _compile_target(path: Path, source: str, header: dict[str, str]) -> jinja2.Template:
    expr = header.get("target", _DEFAULT_TARGET)
    try:
        return _expression(expr)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{_header_line(source, 'target')}: header 'target' {expr!r}: "
                            f"{e.message}") from None


EOS = "<eos>"  # `end: eos` in a header: the tokenizer's end-of-sequence token ends an item's answer


def parse_end(path: Path, raw: str) -> str:
    if not raw:
        return ""
    if raw == "eos":
        return EOS
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, str) or not value:
        raise TemplateError(f"{path}: header 'end' must be eos or a quoted non-empty string such as \"\\n\"; "
                            f"got {raw!r}")
    return value


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


def load_template(name_or_path: str, kind: str | None = None) -> Template:
    """Load a shipped template by name (`title/next_item_v1`) or any `.j2` file by path.

    `kind` None: a ranking template, whose header `style` must be a registered prompt style;
    otherwise the header's `style` must be `kind` (`chat-understand`, `chat-reason`, `kg-extract`,
    `kg-explain`, `item`: templates of the other components, rendered in the same sandbox).
    """
    p = Path(name_or_path)
    if p.suffix == ".j2" or p.is_file():
        path, name = p, str(p)
    else:
        path, name = templates_dir() / f"{name_or_path}.j2", name_or_path
    if not path.is_file():
        shipped = list_templates(kind)
        raise TemplateError(f"{kind or 'prompt'} template {name_or_path!r} not found (looked for {path}); "
                            f"shipped: {', '.join(shipped) or 'none'}")
    source = path.read_text(encoding="utf-8")
    header = parse_header(path, source)
    style = header.get("style", "")
    if kind is None and style not in STYLES:
        raise TemplateError(f"{path}: header 'style' must be one of {STYLES.names()}; got {style!r}")
    if kind is not None and style != kind:
        raise TemplateError(f"{path}: header 'style' must be {kind!r} here; got {style!r}")
    chat = header.get("chat", "false").lower()
    if chat not in ("true", "false"):
        raise TemplateError(f"{path}: header 'chat' must be true or false; got {chat!r}")
    # Compile now so syntax errors and unknown filters surface before any model is loaded.
    try:
        _env(path.parent.resolve()).get_template(path.name)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{e.lineno}: {e.message}") from None
    _compile_target(path, source, header)
    parse_end(path, header.get("end", ""))
    return Template(name, path.resolve(), style, chat == "true", header, source)


def list_templates(kind: str | None = None) -> list[str]:
    """Names (`<folder>/<stem>`) of the shipped templates: the prompt templates (files in the style
    folders), or those whose header `style` is `kind`."""
    root = templates_dir()
    files = sorted(root.rglob("*.j2"))
    if kind is None:
        return [p.relative_to(root).with_suffix("").as_posix() for p in files if p.relative_to(root).parts[0] in STYLES]
    return [p.relative_to(root).with_suffix("").as_posix() for p in files
            if parse_header(p, p.read_text(encoding="utf-8")).get("style") == kind]
