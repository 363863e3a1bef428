"""The cases ``benchmarks/bad_inputs.py`` runs, and the scratch folder they run in."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TINY = ("--set", "epochs=1", "--set", "train.progress=false", "--set", "model.hidden_size=16",
        "--set", "max_len=10", "--set", "train.threads=1")
TINY_API = ["epochs=1", "train.progress=false", "model.hidden_size=16", "max_len=10",
            "train.threads=1"]
REAL_DATA = os.environ.get("DENOISEREC_DATA", "")


@dataclass(frozen=True)
class Case:
    """One command and what it must do.

    ``expect``: ``error`` (exit 2, one ``denoiserec: error:`` line on stderr), ``warning``
    (exit 0, one ``denoiserec: warning:`` line), ``ok`` (exit 0, nothing on stderr; the shown
    line is the first stdout line matching ``show``) or ``broken`` (exit 1, one
    ``denoiserec: <dataset>:`` line: ``datasets --stats``).
    """

    label: str
    argv: tuple[str, ...]
    section: str
    expect: str = "error"
    writes: tuple[str, ...] = ()
    cwd: str = "."
    show: str = ""
    needs: str = ""  # root (a tmpfs mount) | real-data
    python: bool = False
    real_data: bool = False

    @property
    def shown(self) -> str:
        if self.python:
            return f"python -c {shlex.quote(self.argv[0])}"
        text = " ".join(shlex.quote(arg) for arg in self.argv)
        text = text.replace(" ".join(TINY), "$TINY")
        prefix = f"cd {self.cwd} && " if self.cwd != "." else ""
        return f"{prefix}denoiserec {text}"

    def env(self, scratch: Scratch) -> dict[str, str]:
        return {"DENOISEREC_DATA": REAL_DATA} if self.real_data else {}

    def unavailable(self, scratch: Scratch) -> str | None:
        if self.needs == "root" and not scratch.mounted:
            return "needs root to mount a tmpfs"
        if self.real_data and not (Path(REAL_DATA) / "RetailRocket-multibehavior").is_dir():
            return "needs the real RetailRocket files under $DENOISEREC_DATA"
        return None

    def pick(self, stdout: str, errors: list[str]) -> str:
        if self.expect == "ok":
            found = [line for line in stdout.splitlines() if re.search(self.show, line)]
            return found[0] if found else "(no line matched)"
        return errors[-1] if errors else "(nothing on stderr)"

    def judge(self, code: int, stdout: str, errors: list[str]) -> str | None:
        """Why the run breaks the rules of its ``expect``; None when it keeps them."""
        if any("Traceback" in line for line in errors):
            return "a traceback"
        wanted = {"error": (2, "denoiserec: error:"), "warning": (0, "denoiserec: warning:"),
                  "broken": (1, "denoiserec: "), "ok": (0, None)}[self.expect]
        if code != wanted[0]:
            return f"exit code {code}, expected {wanted[0]}"
        if wanted[1] is None:
            if errors:
                return f"stderr not empty: {errors[:2]}"
            if not any(re.search(self.show, line) for line in stdout.splitlines()):
                return f"no stdout line matches {self.show!r}"
            return None
        if len(errors) != 1 or not errors[0].startswith(wanted[1]):
            return f"stderr is not one '{wanted[1]}' line: {errors[:3]}"
        return None


def _log_frame(seed: int, users: int = 40) -> pd.DataFrame:
    from denoiserec.data.synthetic import SyntheticConfig, generate

    log = generate(SyntheticConfig(n_users=users, n_items=60, mean_length=15, seed=seed))
    return pd.DataFrame({"user_id": log.user_tokens[log.row_users],
                         "item_id": log.item_tokens[log.items], "timestamp": log.timestamps})


def _few(path: Path, per_user: int) -> None:
    rows = [(f"u{u}", f"i{u * per_user + k}", k) for u in range(5) for k in range(per_user)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)


class _Evil:
    """Pickled into a checkpoint: unpickling it would run ``print`` (any code, in general)."""

    def __reduce__(self) -> tuple:
        return (print, ("this checkpoint ran code",))


@dataclass
class Scratch:
    """The scratch folder: data files, trained runs, locks held by a live process, mounts."""

    root: Path
    mounted: bool = False
    sleeper: subprocess.Popen | None = None
    mounts: list[Path] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def clean(self, text: str) -> str:
        """A printed line with the scratch folder's path taken out."""
        return text.replace(f"{self.root}/", "").replace(str(self.root), ".")

    def close(self) -> None:
        for mount in self.mounts:
            subprocess.run(["umount", str(mount)], check=False)
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait()

    def _lock(self, folder: str, text: str) -> None:
        (self.root / folder).mkdir(exist_ok=True)
        (self.root / folder / ".lock").write_text(text)

    def _copy_run(self, name: str) -> Path:
        target = self.root / name
        shutil.copytree(self.root / "run", target)
        return target

    def build(self) -> None:
        from denoiserec.atomic import start_time
        from denoiserec.compare import compare
        from denoiserec.run import train

        root = self.root
        os.chdir(root)
        for folder in ("data/ml-100k", "tmp", "sub"):
            (root / folder).mkdir(parents=True)
        (self.data / "ml-100k" / "ml-100k.inter").write_text("not an atomic file\n1\t2\n")
        _log_frame(2).to_csv(root / "small.csv", index=False)
        _log_frame(3).to_csv(root / "other.csv", index=False)
        _log_frame(2).to_csv(root / "changing.csv", index=False)
        _few(root / "thin.csv", 3)
        _few(root / "one.csv", 1)
        _log_frame(2).set_axis(["uid", "iid", "ts"], axis=1).to_csv(root / "renamed.csv",
                                                                      index=False)
        unknown = _log_frame(2)
        unknown.loc[len(unknown)] = ["0", "never-seen", 1e12]
        unknown.to_csv(root / "unknown.csv", index=False)
        (root / "notes.txt").write_text("my notes\n")
        (root / "bad.yaml").write_text("model: {name: sasrec\n")
        frame = _log_frame(2)
        frame.insert(1, "kind", "view")
        frame.set_axis(["user_id", "item_id", "item_id", "timestamp"], axis=1).to_csv(
            root / "dup.csv", index=False)
        frame[["user_id", "kind", "timestamp"]].set_axis(
            ["user_id", "item_id", "timestamp"], axis=1).to_csv(root / "const.csv", index=False)
        typed = _log_frame(2).assign(price="2.5")
        typed.loc[7, "price"] = "cheap"
        typed.set_axis(["user_id:token", "item_id:token", "timestamp:float", "price:float"],
                       axis=1).to_csv(root / "typed.inter", sep="\t", index=False)
        shutil.copy(REPO / "configs" / "msdccl-ml-100k.yaml", root / "msdccl-ml-100k.yaml")
        from denoiserec.data.parsing import MEMORY_PER_BYTE, available_memory

        size = max(2 << 30, int((available_memory() or 0) / MEMORY_PER_BYTE["text"] * 1.5))
        with open(root / "huge.csv", "wb") as handle:
            handle.write(b"user_id,item_id\n")
            handle.truncate(size)

        train(dataset="small.csv", overrides=TINY_API, output="run")
        train(dataset="small.csv", overrides=TINY_API, output="relrun")
        train(model="din", dataset="small.csv", protocol="ctr", output="ctrrun",
              overrides=["epochs=1", "train.progress=false", "train.threads=1",
                         "protocol.ctr.negatives=5"])
        tiny = [o for o in TINY_API if o != "epochs=1"]
        compare(["sasrec"], "small.csv", "recbole", [0.0], "insert", 1, TINY_API, Path("R"))
        compare(["sasrec"], "small.csv", "recbole", [0.0], "insert", 1, [*tiny, "epochs=2"],
                Path("R2"))
        compare(["sasrec"], "changing.csv", "recbole", [0.0], "insert", 1, TINY_API, Path("R3"))
        _log_frame(4).to_csv(root / "changing.csv", index=False)

        broken = self._copy_run("broken")
        (broken / "config.yaml").write_text("model: [sasrec\n")
        edited = self._copy_run("edited")
        text = (edited / "config.yaml").read_text().replace("hidden_size: 16", "hidden_size: 32")
        (edited / "config.yaml").write_text(text)
        both = self._copy_run("edited2")
        (both / "config.yaml").write_text(text)
        fingerprint = json.loads((both / "fingerprint.json").read_text())
        fingerprint["config"]["model"]["hidden_size"] = 32
        (both / "fingerprint.json").write_text(json.dumps(fingerprint))
        (self._copy_run("nofp") / "fingerprint.json").unlink()
        with open(self._copy_run("evilrun") / "best.pt", "wb") as handle:
            pickle.dump({"meta": {}, "model": _Evil()}, handle)
        truncated = self._copy_run("truncrun") / "best.pt"
        truncated.write_bytes(truncated.read_bytes()[:2000])
        for name in ("training", "unfinished"):
            metrics = self._copy_run(name) / "metrics.json"
            report = json.loads(metrics.read_text())
            metrics.write_text(json.dumps({**report, "finished": False}))

        self.sleeper = subprocess.Popen(["sleep", "3600"])  # a live process that is not us
        pid = self.sleeper.pid
        self._lock("busy", f"{pid} {start_time(pid)}")
        self._lock("training", f"{pid} {start_time(pid)}")
        self._lock("foreign", str(pid))  # an old lock: no start time, pid alive
        self._lock("reused", f"{pid} 1")  # the pid now runs a process started later
        for name, options in (("ro", "ro,size=64k"), ("full", "size=64k")):
            (root / name).mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs",
                                   str(root / name)], capture_output=True, check=False)
            if done.returncode == 0:
                self.mounts.append(root / name)
        self.mounted = len(self.mounts) == 2


def _case(label: str, *argv: str, section: str = "earlier", **options: object) -> Case:
    return Case(label, tuple(argv), section, **options)


def _cases() -> list[Case]:
    t, s, n = "traceback", "silent", "newcomer"
    cell = "R3/cells/sasrec-noise0-seed2020"
    api = ("import denoiserec; r = denoiserec.train(dataset='small.csv', overrides={}{}); "
           "print('best epoch', r.best_epoch, 'test ndcg@10', round(r.test['ndcg@10'], 4))")
    return [
        _case("negative learning rate", "train", "--set", "lr=-1", "--output", "out"),
        _case("zero hidden size", "train", "--set", "model.hidden_size=0", "--output", "out"),
        _case("hidden size not divisible by the heads", "train", "--set",
              "model.hidden_size=15", "--output", "out"),
        _case("zero max_len", "train", "--set", "max_len=0", "--output", "out"),
        _case("dropout above 1", "train", "--set", "model.hidden_dropout=1.5", "--output", "out"),
        _case("replacing more than every item", "train", "--set", "noise.kind=replace", "--set",
              "noise.ratio=1.5", "--output", "out"),
        _case("unqualified typo", "train", "--set", "epoch=1"),
        _case("unqualified key of a section", "train", "--set", "valid_metric=ndcg@10"),
        _case("dataset name typo", "train", "--dataset", "ml100k"),
        _case("model name typo", "train", "--model", "sasrek"),
        _case("value that is not YAML", "train", "--set", "model.hidden_size=[1"),
        _case("broken YAML file", "train", "--config", "bad.yaml"),
        _case("--output naming a file", "train", "--dataset", "small.csv", "--output",
              "notes.txt"),
        _case("users with 3 interactions (no validation target)", "train", "--dataset",
              "thin.csv", "--output", "out"),
        _case("users with 1 interaction", "train", "--dataset", "one.csv", "--output", "out"),
        _case("a second train on a run being trained", "train", "--dataset", "small.csv",
              "--output", "busy", *TINY),
        _case("read-only disk", "train", "--dataset", "small.csv", "--output", "ro/run", *TINY,
              needs="root"),
        _case("full disk", "train", "--dataset", "small.csv", "--output", "full/run", *TINY,
              needs="root", writes=("full",)),
        _case("file too large for memory (sparse)", "train", "--dataset", "huge.csv"),
        _case("negative noise ratio", "compare", "--models", "sasrec", "--dataset", "synthetic",
              "--noise", "-0.1"),
        _case("replace ratio above 1", "compare", "--models", "sasrec", "--dataset",
              "synthetic", "--noise", "1.5", "--noise-kind", "replace"),
        _case("no seeds", "compare", "--models", "sasrec", "--dataset", "synthetic", "--seeds",
              "0"),
        _case("unknown model among others", "compare", "--models", "sasrec,foo", "--dataset",
              "synthetic"),
        _case("noise ratio via --set", "compare", "--models", "sasrec", "--dataset",
              "synthetic", "--set", "noise.ratio=0.2"),
        _case("finished cell of another dataset", "compare", "--models", "sasrec", "--dataset",
              "other.csv", "--noise", "0", "--seeds", "1", "--output", "R", *TINY),
        _case("finished cell of another configuration", "compare", "--models", "sasrec",
              "--dataset", "small.csv", "--noise", "0", "--seeds", "1", "--output", "R", *TINY,
              "--set", "lr=0.01"),
        _case("finished cell whose data file changed", "compare", "--models", "sasrec",
              "--dataset", "changing.csv", "--noise", "0", "--seeds", "1", "--output", "R3",
              *TINY),
        _case("fewer epochs than a cell has trained", "compare", "--models", "sasrec",
              "--dataset", "small.csv", "--noise", "0", "--seeds", "1", "--output", "R2", *TINY),
        _case("evaluate after the data changed", "evaluate", cell),
        _case("broken config.yaml in a run", "evaluate", "broken"),
        _case("clean: threshold nan", "clean", "--run", "run", "--input", "small.csv",
              "--output", "c.csv", "--threshold", "nan"),
        _case("clean: a setting of the run", "clean", "--run", "run", "--input", "small.csv",
              "--output", "c.csv", "--drop-ratio", "0.1", "--set", "data.max_len=5"),
        _case("clean: columns under other names", "clean", "--run", "run", "--input",
              "renamed.csv", "--output", "c.csv", "--drop-ratio", "0.1"),
        _case("clean: items the model never saw", "clean", "--run", "run", "--input",
              "unknown.csv", "--output", "c.csv", "--drop-ratio", "0.1"),
        _case("clean: output in another format", "clean", "--run", "run", "--input",
              "small.csv", "--output", "c.tsv", "--drop-ratio", "0.1"),
        _case("clean: output over the input", "clean", "--run", "run", "--input", "small.csv",
              "--output", "small.csv", "--drop-ratio", "0.1"),
        _case("datasets --stats with a broken file (the others listed)", "datasets", "--stats",
              expect="broken"),
        # -- issue 28: tracebacks
        _case("a loss the model does not implement (MGSD-WSS, sampled softmax)", "train",
              "--model", "mgsd-wss", "--dataset", "small.csv", "--set", "train.loss=sampled",
              "--set", "train.n_negatives=5", "--output", "out", section=t),
        _case("the same under ATJT reweighting", "train", "--model", "mgsd-wss", "--dataset",
              "small.csv", "--set", "train.loss=sampled", "--set", "train.n_negatives=5",
              "--set", "train.reweight=atjt", "--output", "out", section=t),
        _case("evaluate a run whose config.yaml was edited", "evaluate", "edited", section=t),
        _case("... and its fingerprint.json too (the checkpoint's shapes differ)", "evaluate",
              "edited2", section=t),
        _case("absurd hidden size", "train", "--dataset", "small.csv", "--set",
              "model.hidden_size=100000", "--output", "out", section=t),
        _case("absurd max_len", "train", "--dataset", "small.csv", "--set", "max_len=1000000000",
              "--output", "out", section=t),
        # -- issue 28: accepted silently, or wrong
        _case("two columns of the same name", "train", "--dataset", "dup.csv", "--output", "out",
              section=s),
        _case("a one-item catalogue (a constant item column)", "train", "--dataset",
              "const.csv", "--output", "out", section=s),
        _case("an .inter float column holding text", "train", "--dataset", "typed.inter",
              "--output", "out", section=s),
        _case("evaluate a run whose fingerprint.json was deleted", "evaluate", "nofp",
              section=s),
        _case("resume a run whose fingerprint.json was deleted", "train", "--dataset",
              "small.csv", "--output", "nofp", *TINY, section=s),
        _case("noise.users without noise.ratio", "train", "--dataset", "small.csv", "--set",
              "noise.users=0.5", "--output", "out", section=s),
        _case("another protocol's setting (mask_history under recbole)", "train", "--dataset",
              "small.csv", "--set", "protocol.mask_history=true", "--output", "out", section=s),
        _case("another protocol's setting (n_negatives under recbole)", "train", "--dataset",
              "small.csv", "--set", "protocol.n_negatives=50", "--output", "out", section=s),
        _case("train.atjt.replaced above max_len", "train", "--dataset", "small.csv", "--set",
              "train.reweight=atjt", "--set", "train.atjt.replaced=20", "--set", "max_len=10",
              "--output", "out", section=s),
        _case("more BPR negatives than the catalogue", "train", "--dataset", "small.csv",
              "--set", "train.loss=bpr", "--set", "train.n_negatives=100", "--output", "out",
              section=s),
        _case("more sampled-softmax negatives than the catalogue", "train", "--dataset",
              "small.csv", "--set", "train.loss=sampled", "--set", "train.n_negatives=100",
              "--output", "out", section=s),
        _case("evaluate a CTR model's run under recbole", "evaluate", "ctrrun", "--protocol",
              "recbole", section=s),
        _case("evaluate a run still being trained (then its table)", "evaluate", "training",
              section=s, expect="warning"),
        _case("evaluate a run whose training stopped (then its table)", "evaluate",
              "unfinished", section=s, expect="warning"),
        _case("a lock whose pid now runs another program (no start time recorded)", "train",
              "--dataset", "small.csv", "--output", "foreign", *TINY, section=s),
        _case("a lock whose pid was reused (start time differs): taken over, trains", "train",
              "--dataset", "small.csv", "--output", "reused", *TINY, section=s, expect="ok",
              show="^training", writes=("reused",)),
        _case("a checkpoint holding pickled code", "evaluate", "evilrun", section=s),
        _case("a truncated checkpoint", "evaluate", "truncrun", section=s),
        # -- issue 28: a newcomer's first hour
        _case("a long epoch on piped output (line every train.progress_seconds)", "train",
              "--dataset", "small.csv", "--output", "prog", *TINY, "--set",
              "train.progress=true", "--set", "train.progress_seconds=0", section=n,
              expect="ok", show=r"^epoch 0: batch", writes=("prog",)),
        _case("RetailRocket under target without its target behaviour", "train", "--dataset",
              "retailrocket", "--protocol", "target", "--output", "out", section=n,
              real_data=True),
        _case("Python API without output (says where it writes)",
              api.format(TINY_API, ""), section=n, python=True, expect="ok",
              show="^training", writes=("runs",)),
        _case("Python API with overrides as one string",
              api.format("'epochs=1'", ", output='strrun'"), section=n, python=True,
              expect="ok", show="^best epoch", writes=("strrun",)),
        _case("evaluate from another directory (dataset path stored resolved)", "evaluate",
              "../relrun", cwd="sub", section=n, expect="ok", show="^dataset:"),
        _case("datasets without --stats (empty counts explained)", "datasets", section=n,
              expect="ok", show="--stats"),
        _case("a config of one model and --model of another", "train", "--config",
              "msdccl-ml-100k.yaml", "--model", "sasrec", section=n),
        _case("train.seed=0", "train", "--dataset", "small.csv", "--output", "seed0", *TINY,
              "--set", "train.seed=0", section=n, expect="ok", show="^best epoch",
              writes=("seed0",)),
        _case("make demo's temporary folder (TMPDIR left as it was)", "demo", "--set",
              "epochs=1", "--set", "train.threads=1", section=n, expect="ok",
              show="temporary"),
    ]


CASES = _cases()
