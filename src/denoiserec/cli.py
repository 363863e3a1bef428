"""``denoiserec`` command line: subcommands only parse arguments and call the Python API.

Every error is one line on stderr with exit code 2 (``--debug``: the traceback instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from denoiserec.errors import DenoiserecError

if TYPE_CHECKING:
    from denoiserec.run import RunResult


def _result_lines(result: RunResult) -> str:
    epochs = len(result.history)
    return (f"best epoch: {result.best_epoch} (counted from 0, of epochs 0-{epochs - 1})   "
            f"run: {result.run_dir}\n{result.table()}")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with model/data/protocol/train")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a setting, e.g. --set epochs=20 --set model.hidden_size=128")


def cmd_train(args: argparse.Namespace) -> None:
    from denoiserec.run import train
    from denoiserec.train.distributed import is_main_process

    overrides = list(args.overrides)
    for flag, key in ((args.model, "model.name"), (args.dataset, "data.dataset"),
                      (args.protocol, "protocol.name")):
        if flag is not None:
            overrides.insert(0, f"{key}={flag}")
    result = train(config=args.config, overrides=overrides, output=args.output)
    if is_main_process():  # under torchrun, rank 0 reports for all
        print(_result_lines(result))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from denoiserec.fingerprints import load_run_config
    from denoiserec.report.tables import metrics_table
    from denoiserec.run import evaluate_run

    dataset = load_run_config(args.run_dir).data.dataset
    evaluations = evaluate_run(args.run_dir, protocol=args.protocol,
                               checkpoint=args.checkpoint)
    protocol = evaluations["test"].protocol
    print(f"dataset: {dataset}   protocol: {protocol}   checkpoint: {args.checkpoint}   "
          f"run: {args.run_dir}")
    print(metrics_table({name: e.metrics for name, e in evaluations.items()}))
    if args.json:
        payload = {"protocol": protocol, **{n: e.metrics for n, e in evaluations.items()}}
        print(json.dumps(payload, indent=1))


def cmd_datasets(args: argparse.Namespace) -> int:
    """Exit code 1 when ``--stats`` found a broken file (reported, the others still read)."""
    from denoiserec.data import KNOWN, data_dir, load_dataset
    from denoiserec.report.tables import markdown_table

    rows, broken = [], 0
    for name, known in KNOWN.items():
        path = data_dir() / known.relative_path
        if path.is_file() and args.stats:
            try:
                stats = load_dataset(name).statistics()
            except (DenoiserecError, OSError) as err:
                print(f"denoiserec: {name}: {_one_line(err)}", file=sys.stderr)
                rows.append([name, f"broken ({path})", "", "", "", known.description])
                broken += 1
                continue
            rows.append([name, str(path), stats["users"], stats["items"],
                         stats["interactions"], known.description])
        else:
            rows.append([name, str(path) if path.is_file() else f"missing ({path})", "", "", "",
                         known.description])
    rows.append(["synthetic", "built in (seeded generator)", "", "", "",
                 "Zipf popularity, latent interests, transitions"])
    print(f"data directory: {data_dir()} (set DENOISEREC_DATA to change it)")
    print(markdown_table(["name", "file", "users", "items", "interactions", "description"],
                         rows))
    if not args.stats:
        print("users, items and interactions: run `denoiserec datasets --stats` to read each "
              "file and count them")
    return 1 if broken else 0


def cmd_models(_: argparse.Namespace) -> None:
    from denoiserec.models import MODELS

    for name, cls in sorted(MODELS.items()):
        doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip()
        print(f"{name:10s} {doc.splitlines()[0] if doc else ''}")


def cmd_demo(args: argparse.Namespace) -> None:
    from denoiserec.run import train

    print("denoiserec demo: SASRec on the built-in synthetic log (600 users, 400 items), "
          "recbole protocol (leave-one-out, full ranking)")
    with tempfile.TemporaryDirectory(prefix="denoiserec-demo-") as scratch:
        output = args.output or Path(scratch) / "run"  # removed at the end unless --output
        result = train(model="sasrec", dataset="synthetic", protocol="recbole",
                       overrides=["epochs=4", *args.overrides], output=output)
        print(_result_lines(result))
        if args.output:
            print(f"curve: {output / 'curve.png'}   metrics: {output / 'metrics.json'}")
        else:
            print("the run folder was temporary and is now removed; pass --output DIR to keep "
                  "its curve.png, metrics.json and checkpoints")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0,0.1,0.2, got '{text}'") from None


def cmd_compare(args: argparse.Namespace) -> None:
    from denoiserec.compare import compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    output = args.output or Path("runs") / f"compare-{Path(args.dataset).stem}-{args.protocol}"
    compare(models, args.dataset, args.protocol, args.noise, args.noise_kind, args.seeds,
            args.overrides, output, train=not args.no_train, recompute=args.recompute)
    print(f"results: {output}/summary.md, results.csv, summary.json, robustness.png")


def cmd_clean(args: argparse.Namespace) -> None:
    from denoiserec.clean import clean

    report = clean(args.run, args.input, args.output, threshold=args.threshold,
                   drop_ratio=args.drop_ratio, unknown=args.unknown, force=args.force,
                   overrides=args.overrides, keep_last=args.keep_last)
    print(f"scored {report.interactions} interactions of {report.users} users with "
          f"{report.scorer} noise scores; flagged {report.flagged}"
          f"{f', {report.unknown} with unknown items' if report.unknown else ''}; "
          f"{report.users_affected} users affected")
    print(f"scored log: {report.scored_path}\ncleaned log: {report.cleaned_path}")


def cmd_synthesize(args: argparse.Namespace) -> None:
    from denoiserec.data.synthetic import SyntheticConfig
    from denoiserec.data.synthetic_parquet import write_synthetic_parquet

    config = SyntheticConfig(n_users=args.users, n_items=args.items,
                             n_interests=args.interests, mean_length=args.mean_length,
                             max_length=args.max_length, noise_ratio=args.noise_ratio,
                             seed=args.seed)
    written = write_synthetic_parquet(args.output, config, args.chunk_users, args.force)
    print(f"wrote {written.rows:,} interactions of {written.users:,} users over "
          f"{args.items:,} items ({written.noisy_rows:,} planted noise) to {written.path} "
          f"in {written.seconds:.1f} s")
def cmd_tune(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from denoiserec.tuning import TuneJob, load_spec, tune

    spec = load_spec(args.space)
    if args.trials is not None:
        spec = replace(spec, trials=args.trials)
    output = args.output or Path("runs") / f"tune-{Path(str(args.space)).stem}"
    best = tune(TuneJob(spec=spec, config=args.config, overrides=tuple(args.overrides),
                        output=output, storage=args.storage, worker=args.worker))
    if best is not None:
        print(f"best trial {best['trial']}: " + ", ".join(f"{k}={v}" for k, v in
                                                          best["params"].items()))
    print(f"results: {output}/summary.md, trials.csv, best.json, history.png")


def cmd_report(args: argparse.Namespace) -> None:
    from denoiserec.report.html import write_report

    path = write_report(args.folders, args.output)
    print(f"report: {path}")


def build_parser() -> argparse.ArgumentParser:
    from denoiserec.protocols import PROTOCOL_NAMES  # each protocol owns its CLI name

    parser = argparse.ArgumentParser(prog="denoiserec", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model and evaluate it under a protocol")
    train.add_argument("--model", help="registered model name (see `denoiserec models`)")
    train.add_argument("--dataset", help="known dataset name or path to a log file")
    train.add_argument("--protocol", choices=PROTOCOL_NAMES)
    train.add_argument("--output", type=Path, help="run directory (resumed if interrupted)")
    _add_run_arguments(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="re-evaluate a run's best (or last) checkpoint")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default="best",
                          help="best valid epoch (default) or the final epoch")
    evaluate.add_argument("--protocol", choices=PROTOCOL_NAMES)
    evaluate.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    datasets = sub.add_parser("datasets", help="known datasets, where they are found")
    datasets.add_argument("--stats", action="store_true", help="read each file for statistics")
    datasets.set_defaults(func=cmd_datasets)

    models = sub.add_parser("models", help="registered models")
    models.set_defaults(func=cmd_models)

    compare = sub.add_parser("compare", help="models x noise ratios x seeds, with significance")
    compare.add_argument("--models", required=True, help="comma-separated, first = reference")
    compare.add_argument("--dataset", required=True)
    compare.add_argument("--protocol", default="recbole", choices=PROTOCOL_NAMES)
    compare.add_argument("--noise", type=_floats, default=[0.0], help="ratios, e.g. 0,0.1,0.2")
    compare.add_argument("--noise-kind", default="insert",
                         choices=["replace", "insert", "popular", "off-interest"])
    compare.add_argument("--seeds", type=int, default=3)
    compare.add_argument("--output", type=Path)
    compare.add_argument("--set", dest="overrides", action="append", default=[],
                         help="key=value for every cell, MODEL:key=value for one model's cells")
    compare.add_argument("--no-train", action="store_true",
                         help="train nothing; summarise the cells finished so far")
    compare.add_argument("--recompute", action="store_true",
                         help="retrain the cells trained on other data or settings")
    compare.set_defaults(func=cmd_compare)

    clean = sub.add_parser("clean", help="score a log's interactions and drop the noisy ones")
    clean.add_argument("--run", type=Path, required=True, help="trained run directory")
    clean.add_argument("--input", type=Path, required=True,
                       help="log in any format training reads (.inter, .txt, .csv, ...)")
    clean.add_argument("--output", type=Path, required=True, help="cleaned log (same format)")
    flag = clean.add_mutually_exclusive_group(required=True)
    flag.add_argument("--threshold", type=float, help="drop interactions scoring >= this")
    flag.add_argument("--drop-ratio", type=float, help="drop this fraction of top scores")
    clean.add_argument("--unknown", default="refuse", choices=["refuse", "keep", "drop"],
                       help="rows whose item the model does not know")
    clean.add_argument("--keep-last", type=int, default=0, metavar="K",
                       help="never flag a user's last K interactions (2: leave-one-out's valid "
                            "and test targets stay, so a retrained model is tested on them)")
    clean.add_argument("--force", action="store_true", help="replace existing outputs")
    clean.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="data.columns or data.time_order for reading the input")
    clean.set_defaults(func=cmd_clean)

    synth = sub.add_parser("synthesize", help="write a large synthetic log to Parquet in chunks")
    synth.add_argument("output", type=Path, help="the .parquet file to write")
    synth.add_argument("--users", type=int, default=250_000)
    synth.add_argument("--items", type=int, default=1_000_000)
    synth.add_argument("--interests", type=int, default=100, help="latent interest clusters")
    synth.add_argument("--mean-length", type=int, default=40)
    synth.add_argument("--max-length", type=int, default=200)
    synth.add_argument("--noise-ratio", type=float, default=0.0,
                       help="share of planted off-interest clicks (column is_noise)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--chunk-users", type=int, default=50_000,
                       help="users generated and written at a time (bounds memory)")
    synth.add_argument("--force", action="store_true", help="replace an existing file")
    synth.set_defaults(func=cmd_synthesize)
    tune = sub.add_parser("tune", help="search settings with Optuna (TPE, pruning, resumable)")
    tune.add_argument("space", help="tune YAML file, or a preset name (see the docs): "
                      "msdccl, mgsd-wss, end4rec, atjt, sasrec-fast")
    tune.add_argument("--output", type=Path, help="study directory (resumed if it exists)")
    tune.add_argument("--storage", help="Optuna database URL shared by the workers "
                      "(default: sqlite in the study directory)")
    tune.add_argument("--worker", type=int, default=0,
                      help="this worker's number (seeds its sampler: give workers distinct ones)")
    tune.add_argument("--trials", type=int, help="trials in the study (overrides the file)")
    _add_run_arguments(tune)
    tune.set_defaults(func=cmd_tune)

    report = sub.add_parser("report", help="one static HTML page from compare / tune folders")
    report.add_argument("folders", type=Path, nargs="+",
                        help="compare, converged-suite or tune output folders")
    report.add_argument("--output", type=Path, default=Path("report.html"),
                        help="the HTML file (default report.html)")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="train a small model on synthetic data (< 2 minutes)")
    demo.add_argument("--output", type=Path)
    demo.add_argument("--set", dest="overrides", action="append", default=[])
    demo.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # --debug also after the subcommand
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks of errors")
    return parser


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    print(f"denoiserec: warning: {_one_line(Exception(str(message)))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        with warnings.catch_warnings():  # a warning is one line too
            warnings.showwarning = _warning_line
            return func(args) or 0
    except BrokenPipeError:  # the reader of the output went away (``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (DenoiserecError, OSError) as err:
        if args.debug:
            raise
        print(f"denoiserec: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("denoiserec: interrupted (a run directory resumes from its last epoch)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
