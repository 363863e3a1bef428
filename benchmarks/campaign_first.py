"""Train some cells of a campaign first, in the order given (issue 25's accuracy check needs the
SASRec rows of seeds 2021-2022 long before the campaign's order reaches them).

Each cell is trained exactly as the campaign's own workers train it: the pinned checkout's
``benchmarks/campaign.py`` (the current directory's, not this file's neighbour) gives its
settings (``cell_config``), it trains into the campaign's cells
folder under the same lock, and a finished cell is skipped; the campaign's workers later skip
it as finished. Only the order changes. Run it from the campaign's pinned checkout:

    cd ../campaign && PYTHONPATH=$PWD/src DENOISEREC_DATA=../shared/data \\
        python ../main/benchmarks/campaign_first.py ml-100k-sasrec-seed2021 \\
        ml-100k-sasrec-random-seed2021
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from denoiserec.compare import claimed
from denoiserec.run import load_log, train_config


def pinned_campaign():
    """The campaign module of the checkout this script is run from (Python would otherwise
    import the ``campaign.py`` beside this file, that is main's, whose code may differ)."""
    spec = importlib.util.spec_from_file_location("campaign", Path("benchmarks/campaign.py"))
    if spec is None or spec.loader is None or not Path("benchmarks/campaign.py").is_file():
        sys.exit("campaign_first.py: run it from the campaign's checkout "
                 "(no benchmarks/campaign.py here)")
    module = importlib.util.module_from_spec(spec)
    sys.modules["campaign"] = module
    spec.loader.exec_module(module)
    return module


def main(names: list[str]) -> None:
    campaign = pinned_campaign()
    by_name = {cell.name: cell for cell in campaign.cells([1, 2, 3, 4, 5])}
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        sys.exit(f"campaign_first.py: name cells of the campaign (unknown: {unknown})")
    derived = [name for name in names if by_name[name].row == "clean-retrain"]
    if derived:
        sys.exit(f"campaign_first.py: {derived} train on a cleaned log; the campaign's own "
                 "workers train them")
    for name in names:
        cell, path = by_name[name], campaign.run_dir(campaign.DEFAULT_OUTPUT, by_name[name])
        if campaign.finished(path):
            print(f"[first] {name}: finished already", flush=True)
            continue
        config = campaign.cell_config(cell, "cpu", False)
        with claimed(path) as mine:
            if not mine:
                print(f"[first] {name}: a campaign worker holds it", flush=True)
                continue
            print(f"[first] training {name}", flush=True)
            train_config(config, path, load_log(config))


if __name__ == "__main__":
    main(sys.argv[1:])
