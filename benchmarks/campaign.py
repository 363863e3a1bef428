"""The denoising campaign: every denoiser to convergence against its own control (issue 26).

Cells (equal width H = 64; prefix instances; RecBole's early stopping on valid NDCG@10,
patience 10, 200 epochs at most; seeds 2020-2022; best checkpoint tested once):

1. ml-100k, ``recbole``: SASRec, BERT4Rec, MSDCCL, its control (same backbone, alpha = 1,
   lambda = 0), MGSD-WSS, its control (MGSD-WSS with both levels and L_ws off: its BERT4Rec
   backbone over the same encoder, next-item CE, the same settings), clean
   and retrain (SASRec retrained on the log a trained SASRec's surprise scores clean, at the
   drop ratio of MSDCCL's gate, each user's valid and test targets kept); and SASRec with
   the random batch order (``sasrec-random``: issue 25's accuracy check of the length order).
2. RetailRocket, ``target``: END4Rec vs SASRec and FMLP-Rec with behaviour embeddings.
3. Beauty, ``fmlp``: the rows of 1 plus FMLP-Rec.
4. ml-100k with 20 % inserted noise: SASRec, both denoisers and their controls; detection.
5. Ablations (seed 2020 only): MSDCCL without the hard branch / L_cl / the curriculum;
   MGSD-WSS without L_ws / the item level / the interest level; END4Rec
   without hard / soft / contrastive / staging.

Every cell is an ordinary run folder (``OUT/cells/<cell>``: fingerprint, lock, resume), so the
campaign resumes anywhere, skips finished cells and refuses a folder trained on other inputs.

usage: DENOISEREC_DATA=../shared/data python benchmarks/campaign.py run [--workers 2]
           [--device cpu|cuda] [--groups 1,2,3,4,5] [--time-limit S] [--output DIR] [--smoke]
       python benchmarks/campaign.py status [--output DIR]
       python benchmarks/campaign.py report [--output DIR]     (headline table and curves)
       python benchmarks/campaign.py project --costs out/epoch-cost-*.json   (core-hours)
``--smoke``: every cell for one epoch on the small Taobao sample (4,321 interactions, under
each cell's protocol), one seed, into ``benchmarks/out/campaign-smoke``: checks the path,
e.g. ``--device cuda`` on a CPU-only machine is refused in one line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "out" / "campaign"
SEEDS = (2020, 2021, 2022)
COMMON = ["epochs=200", "train.patience=10", "train.valid_metric=ndcg@10",
          "train.instances=prefix", "train.progress=false"]
DROP_RATIO = 0.2  # MSDCCL's gate_drop_ratio: the share clean-and-retrain drops
EXPECTED_EPOCHS = 30  # a typical run to early stop (best ~18 + patience 10 + 1), to project


@dataclass(frozen=True)
class Dataset:
    name: str
    protocol: list[str]
    warmup: int  # the denoisers' warm-up: ~10 % of an epoch's batches
    smoke: list[str]  # stand-in for --smoke


DATASETS = {
    "ml-100k": Dataset("ml-100k", ["protocol=recbole"], 38,
                       ["dataset=taobao", "max_len=20"]),
    "beauty": Dataset("beauty", ["protocol=fmlp"], 51, ["dataset=taobao", "max_len=20"]),
    "retailrocket": Dataset(
        "retailrocket", ["protocol=target", "protocol.target_behaviour=0,3",
                         "protocol.shipped_split=true", "protocol.mask_history=false",
                         "protocol.train_targets=target"], 30,
        ["dataset=taobao", "protocol=target", "protocol.target_behaviour=buy",
         "protocol.shipped_split=false", "protocol.mask_history=false",
         "protocol.train_targets=all"]),
}

DENOISER_TRAIN = ["train.weight_decay=0.0001", "train.clip_grad_norm=5.0"]
BERT_BACKBONE = ["name=bert4rec", "hidden_size=64", "inner_size=64", "n_layers=2", "n_heads=2",
                 "hidden_dropout=0.2", "attn_dropout=0.2"]
MSDCCL_PER_DATASET = {  # the reference's best settings (configs/msdccl-*-h64.yaml)
    "ml-100k": ["att_dropout=0.5", "ae_dropout=0.3", "sequence_last_m=3", "loss_lambda=1.0"],
    "beauty": ["att_dropout=0.4", "ae_dropout=0.5", "sequence_last_m=2", "loss_lambda=0.2"],
}
END4REC = ["hidden_size=64", "n_blocks=4", "dropout=0.2", "epsilon=1.0", "reg_weight=0.01",
           "contrast_weight=0.1", "gate_drop_ratio=0.2", "staged=true",
           "stage_epochs=[3,2,2]", "stage4_lr_scale=0.5"]


def _model(name: str, settings: list[str]) -> list[str]:
    return [f"model={name}", *(f"model.{s}" for s in settings)]


def row_overrides(row: str, dataset: str) -> list[str]:
    """The model settings of a row on a dataset (the campaign's presets, H = 64)."""
    base, _, variant = row.partition("~")
    if base in ("sasrec", "bert4rec", "fmlp", "clean-retrain", "sasrec-random"):
        model = "sasrec" if base in ("clean-retrain", "sasrec-random") else base
        extra = ["train.batch_order=random"] if base == "sasrec-random" else []
        behaviour = ["behaviour_embedding=true"] if variant == "behaviour" else []
        return [*_model(model, behaviour), *extra]
    if base in ("msdccl", "msdccl-control"):
        settings = [*(f"backbone.{s}" for s in BERT_BACKBONE), "inner_size=256",
                    "curriculum_epochs=10", *MSDCCL_PER_DATASET[dataset]]
        if base == "msdccl-control":  # alpha = 1, lambda = 0 (spec §8)
            settings += ["soft_weighting=false", "loss_lambda=0", "use_hard_branch=false",
                         "use_contrastive=false"]
        settings += {"": [], "no-hard": ["use_hard_branch=false"],
                     "no-cl": ["use_contrastive=false"], "no-curriculum": ["curriculum=none"]
                     }[variant]
        return [*_model("msdccl", settings), *DENOISER_TRAIN]
    if base == "mgsd-wss":
        settings = [f"backbone.{s}" for s in BERT_BACKBONE] + {
            "": [], "no-ws": ["ws_weight=0", "head_gradient=all"],
            "no-item": ["use_item_level=false"], "no-interest": ["use_interest_level=false"],
        }[variant]
        return [*_model("mgsd-wss", settings), *DENOISER_TRAIN]
    if base == "mgsd-control":
        # MGSD-WSS with its denoising off (u = r_seq, no L_ws), as MSDCCL's control is MSDCCL
        # with its own off: the same encoder, backbone, objective and warm-up. (The BERT4Rec
        # model alone, this row before 2026-12-03, trains a Cloze objective with its own head.)
        settings = [f"backbone.{s}" for s in BERT_BACKBONE] + [
            "use_item_level=false", "use_interest_level=false", "ws_weight=0",
            "head_gradient=all"]
        return [*_model("mgsd-wss", settings), *DENOISER_TRAIN]
    if base == "end4rec":
        settings = END4REC + {"": [], "no-hard": ["use_hard=false"],
                              "no-soft": ["use_soft=false"],
                              "no-cl": ["use_contrastive=false"], "unstaged": ["staged=false"]
                              }[variant]
        return _model("end4rec", settings)
    raise ValueError(f"unknown campaign row '{row}'")


def row_config(row: str, dataset: str, seed: int, extra: list[str], legacy: bool = False,
               smoke: bool = False):
    """The RunConfig of one cell (``legacy``: without settings older code lacks)."""
    from denoiserec.runconfig import load_config

    data = DATASETS[dataset]
    overrides = [f"dataset={dataset}", *data.protocol, *COMMON, *row_overrides(row, dataset),
                 f"seed={seed}", *extra]
    if any(o.startswith("model=msdccl") or o.startswith("model=mgsd") for o in overrides):
        overrides.append(f"train.warmup_steps={data.warmup}")
    if smoke:
        overrides += [*data.smoke, "epochs=1"]
    if legacy:
        overrides = [o for o in overrides if not o.startswith("train.batch_order")]
    return load_config(overrides=overrides)


@dataclass(frozen=True)
class Cell:
    group: int
    dataset: str
    row: str
    seed: int
    noise: float = 0.0

    @property
    def name(self) -> str:
        noise = f"-noise{self.noise:g}" if self.noise else ""
        return f"{self.dataset}{noise}-{self.row}-seed{self.seed}"


ROWS_1 = ["sasrec", "msdccl", "msdccl-control", "mgsd-wss", "mgsd-control", "bert4rec",
          "clean-retrain"]
GROUPS: dict[int, list[tuple[str, list[str], tuple[int, ...], float]]] = {
    1: [("ml-100k", [*ROWS_1[:1], "sasrec-random", *ROWS_1[1:]], SEEDS, 0.0)],
    2: [("retailrocket", ["end4rec", "sasrec~behaviour", "fmlp~behaviour"], SEEDS, 0.0)],
    3: [("beauty", [*ROWS_1, "fmlp"], SEEDS, 0.0)],
    4: [("ml-100k", ["sasrec", "msdccl", "msdccl-control", "mgsd-wss", "mgsd-control"], SEEDS,
         0.2)],
    5: [("ml-100k", ["msdccl~no-hard", "msdccl~no-cl", "msdccl~no-curriculum",
                     "mgsd-wss~no-ws", "mgsd-wss~no-item",
                     "mgsd-wss~no-interest"], SEEDS[:1], 0.0),
        ("retailrocket", ["end4rec~no-hard", "end4rec~no-soft", "end4rec~no-cl",
                          "end4rec~unstaged"], SEEDS[:1], 0.0)],
}


def cells(groups: list[int], smoke: bool = False) -> list[Cell]:
    """In the order they run: group by group, seed by seed (a seed of every row before the
    next seed, so that paired rows fill together)."""
    out = []
    for group in groups:
        for dataset, rows, seeds, noise in GROUPS[group]:
            for seed in seeds[:1] if smoke else seeds:
                out += [Cell(group, dataset, row, seed, noise) for row in rows]
    return out


def cell_config(cell: Cell, device: str, smoke: bool):
    noise = ([f"noise.ratio={cell.noise}", "noise.kind=insert", f"noise.seed={cell.seed}"]
             if cell.noise else [])
    threads = ["train.threads=1"] if device == "cpu" else []
    return row_config(cell.row, cell.dataset, cell.seed,
                      [*noise, f"train.device={device}", *threads], smoke=smoke)


def run_dir(output: Path, cell: Cell) -> Path:
    return output / "cells" / cell.name


def finished(path: Path) -> bool:
    from denoiserec.runfolder import RunFolder

    return RunFolder(path).finished()


def cleaned_log(source: Path, config, log):
    """The log the trained SASRec in ``source`` (same dataset, noise and seed) cleans: the
    DROP_RATIO share of training rows with the highest surprise dropped, each user's last two
    rows (the valid and test targets) kept, so that the test targets stay the same."""
    from denoiserec.clean import flag_rows
    from denoiserec.noise.scores import score_log
    from denoiserec.run import restore

    trainer = restore(source, None, log)
    noisy = trainer.split.log  # with the cell's injected noise, if any
    scores = score_log(trainer.model, noisy, config.data.max_len, trainer.device)
    flagged = flag_rows(scores, ~noisy.last_rows(2), None, DROP_RATIO)
    return noisy.subset(~flagged, name=f"{noisy.name}-cleaned")


def work(output: Path, groups: list[int], device: str, smoke: bool) -> None:
    """One worker: train unclaimed, unfinished cells in order, pass after pass, until none is
    left (a cell held by another worker, or waiting for the SASRec it cleans with, is
    revisited after a pause while anything else is still running)."""
    logs: dict[str, object] = {}
    while True:
        trained, waiting = _work_pass(output, groups, device, smoke, logs)
        if not trained and not waiting:
            return
        if not trained:
            time.sleep(60)


def _work_pass(output: Path, groups: list[int], device: str, smoke: bool,
               logs: dict[str, object]) -> tuple[bool, bool]:
    from dataclasses import replace

    from denoiserec.compare import claimed
    from denoiserec.run import load_log, train_config

    trained = waiting = False
    for cell in cells(groups, smoke):
        path = run_dir(output, cell)
        if finished(path):
            continue
        config = cell_config(cell, device, smoke)
        if config.data.dataset not in logs:
            logs[config.data.dataset] = load_log(config)
        log = logs[config.data.dataset]
        source = run_dir(output, replace(cell, row="sasrec"))
        if cell.row == "clean-retrain" and not finished(source):
            waiting = True
            continue
        with claimed(path) as mine:
            if not mine:
                waiting = True
                continue
            if finished(path):
                continue
            print(f"[campaign] training {cell.name}", flush=True)
            if cell.row == "clean-retrain":
                log = cleaned_log(source, config, log)
                config = replace(config, noise=None)  # the cleaned log carries the noise
            train_config(config, path, log)
            trained = True
    return trained, waiting


def run(args: argparse.Namespace) -> None:
    """Start ``--workers`` single-thread workers (one log each), wait, then report."""
    from denoiserec.train.trainer import resolve_device

    resolve_device(args.device)  # fail fast: no CUDA device, one line
    for cell in cells(args.groups, args.smoke):  # and on a bad setting, before any cell trains
        cell_config(cell, args.device, args.smoke)
    args.output.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1" if args.device == "cpu" else
           os.environ.get("OMP_NUM_THREADS", "4")}
    processes = []
    for number in range(args.workers):
        log = (args.output / f"worker{number + 1}.log").open("a")
        command = [sys.executable, __file__, "work", "--output", str(args.output), "--groups",
                   ",".join(map(str, args.groups)), "--device", args.device,
                   *(["--smoke"] if args.smoke else [])]
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          env=env))
        time.sleep(3)  # let each claim its first cell
    deadline = time.time() + args.time_limit if args.time_limit else None
    while any(p.poll() is None for p in processes):
        if deadline and time.time() > deadline:
            for p in processes:
                p.terminate()
            break
        time.sleep(10)
    print(status_table(args.output, args.groups, args.smoke))


# seconds per epoch (train + valid, one thread) before a row has run anywhere: issue 25's
# epoch_cost figures after the change (RESULTS.md), rounded up
COST_HINTS = {"ml-100k": 60.0, "beauty": 120.0, "retailrocket": 150.0}
ROW_COST = {"msdccl": 3.0, "msdccl-control": 2.0, "mgsd-wss": 3.5, "bert4rec": 1.3,
            "mgsd-control": 2.0, "fmlp": 1.3, "end4rec": 1.5}  # x SASRec


def _hints(output: Path, all_cells: list[Cell]) -> dict[tuple[str, str], float]:
    """Measured epoch seconds per (dataset, row), from any cell of it that has trained."""
    from campaign_report import epoch_seconds

    from denoiserec.runfolder import RunFolder

    measured: dict[tuple[str, str], float] = {}
    for cell in all_cells:
        report = RunFolder(run_dir(output, cell)).read_metrics()
        if (cell.dataset, cell.row) not in measured and report and report["epochs"]:
            measured[cell.dataset, cell.row] = epoch_seconds(report)
    return measured


def status_table(output: Path, groups: list[int], smoke: bool = False) -> str:
    from campaign_report import cell_state

    lines = ["| cell | state | epochs | best epoch | test NDCG@10 | core-h spent | core-h left |",
             "|---|---|---|---|---|---|---|"]
    totals = {"done": 0, "running": 0, "queued": 0}
    spent = left = 0.0
    todo = cells(groups, smoke)
    measured = _hints(output, todo)
    for cell in todo:
        base = cell.row.split("~")[0]
        hint = measured.get((cell.dataset, cell.row), COST_HINTS[cell.dataset]
                            * ROW_COST.get(base, 1.0))
        state = cell_state(run_dir(output, cell), EXPECTED_EPOCHS, hint)
        totals[state.state] += 1
        spent, left = spent + state.spent_hours, left + state.left_hours
        lines.append(f"| {cell.name} | {state.state} | {state.epochs} | {state.best_epoch} | "
                     f"{state.test_ndcg} | {state.spent_hours:.2f} | {state.left_hours:.2f} |")
    lines.append(f"\n{totals['done']} done, {totals['running']} running, {totals['queued']} "
                 f"queued; {spent:.1f} core-hours spent, about {left:.1f} left (unfinished "
                 f"cells projected to {EXPECTED_EPOCHS} epochs at their row's measured epoch "
                 "cost, or a hint from benchmarks/epoch_cost.py where none has run)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "work", "status", "report", "project"))
    parser.add_argument("--costs", type=Path, nargs="*", default=[],
                        help="project: epoch_cost.py --output files")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--groups", default="1,2,3,4,5")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--time-limit", type=float, default=0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    args.groups = [int(g) for g in args.groups.split(",")]
    if args.output is None:
        args.output = DEFAULT_OUTPUT.with_name("campaign-smoke") if args.smoke else DEFAULT_OUTPUT
    from denoiserec.errors import DenoiserecError

    try:
        if args.command == "run":
            run(args)
        elif args.command == "work":
            work(args.output, args.groups, args.device, args.smoke)
        elif args.command == "status":
            print(status_table(args.output, args.groups, args.smoke))
        elif args.command == "project":
            from campaign_report import projection

            print(projection(cells(args.groups), args.costs, EXPECTED_EPOCHS))
        else:
            from campaign_report import report

            print(report(args.output, cells(args.groups, args.smoke)))
    except DenoiserecError as error:
        sys.exit(f"campaign: {error}")


if __name__ == "__main__":
    main()
