"""The training loop's settings (``train.*``), checked at load; read by ``train/trainer.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import INSTANCES
from denoiserec.errors import ConfigError
from denoiserec.metrics import DEFAULT_KS, METRIC_NAMES
from denoiserec.nn.losses import LOSSES
from denoiserec.train.atjt_model import ATJTConfig, check_reweight
from denoiserec.train.order import BATCH_ORDERS

DEVICES = ("auto", "cpu", "cuda")
VALID_METRICS = (*(f"{name}@{k}" for name in METRIC_NAMES for k in DEFAULT_KS), "auc")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (one loop for every model)."""

    epochs: int = 200
    """Maximum number of epochs."""
    batch_size: int = 256
    """Training instances per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay (L2, as ``torch.optim.Adam``)."""
    clip_grad_norm: float = 0.0
    """Clip the gradient norm to this value; 0 = off (RecBole default)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many batches, then constant."""
    loss: str = "ce"
    """``ce`` (softmax over all items), ``bpr`` (``n_negatives`` uniform negatives per
    positive) or ``sampled`` (softmax over ``n_negatives`` uniform negatives shared by the
    batch, logQ-corrected: for large catalogues)."""
    n_negatives: int = 1
    """``bpr``: negatives per positive; ``sampled``: shared negatives per batch."""
    label_smoothing: float = 0.0
    """``ce`` only: label smoothing of the softmax targets (0 = off)."""
    instances: str = "prefix"
    """``prefix`` = every prefix is an instance, scored at its last position (RecBole);
    ``window`` = all positions of windows at once (the fast mode: next-item on every position
    for causal models, Cloze over the whole window for BERT4Rec; not MSDCCL)."""
    window_stride: int = 0
    """``window`` only: windows of ``max_len`` targets advance by this many (0 = ``max_len``,
    no overlap); each target counts once per epoch, in the window where its context is
    longest, so a smaller stride gives every target a longer context."""
    window_offsets: bool = False
    """``window`` only: shift each user's cut points by an offset drawn anew every epoch (from
    the seed and the epoch), so no target always sits at the start of a window."""
    batch_order: str = "auto"
    """Which instances share a batch (``train/order.py``): ``random`` | ``length`` (shuffled,
    sorted by input length within chunks of 100 batches, batches shuffled: far less padding
    on short sequences) | ``auto`` (``length`` for prefix instances, ``random`` for windows).
    The instances are the same either way."""
    valid_metric: str = "ndcg@10"
    """Early stopping and model selection metric, on the validation set."""
    selection_window: int = 1
    """Select and stop on the mean of the valid metric over the last this-many evaluations
    (1 = the raw value, RecBole's rule); the checkpoint kept is the one of the window's last
    epoch. A window of 3 keeps a noisy curve (fast mode, small data) from selecting a spike."""
    patience: int = 10
    """Stop once more than this many evaluations brought no improvement (RecBole
    ``stopping_step``, same rule)."""
    eval_batch_size: int = 4096
    """Instances per evaluation batch."""
    eval_item_chunk: int = 0
    """Score this many items at a time, merging top Ks (bounded memory for huge catalogues;
    ranks beyond the largest K become K + 1; train/evaluate.py); 0 = all items at once."""
    seed: int = 2020
    """Seed of parameters, shuffling, dropout and sampling."""
    deterministic: bool = True
    """Request deterministic CUDA kernels (CPU runs are repeatable without it)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    threads: int = 0
    """CPU threads for torch; 0 = torch's default."""
    progress: bool = True
    """Show a progress bar (on a terminal), or else a line every ``progress_seconds``."""
    progress_seconds: float = 180.0
    """Seconds between progress lines within an epoch where no bar shows (piped output)."""
    reweight: str = "none"
    """Per-sample weights of the recommendation term: ``none`` | ``atjt`` (train/atjt.py)."""
    atjt: ATJTConfig = field(default_factory=ATJTConfig)
    """ATJT's settings (``train.reweight=atjt`` only)."""

    def __post_init__(self) -> None:
        check_choice("train.instances", self.instances, INSTANCES)
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.valid_metric", self.valid_metric, VALID_METRICS)
        check_choice("train.device", self.device, DEVICES)
        check_choice("train.batch_order", self.batch_order, BATCH_ORDERS)
        check_range("train.lr", self.lr, 0, low_open=True)
        check_range("train.weight_decay", self.weight_decay, 0)
        check_range("train.clip_grad_norm", self.clip_grad_norm, 0)
        check_range("train.label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        for key in ("epochs", "batch_size", "n_negatives", "eval_batch_size",
                    "selection_window"):
            check_range(f"train.{key}", getattr(self, key), 1)
        for key in ("warmup_steps", "patience", "threads", "window_stride", "seed",
                    "progress_seconds", "eval_item_chunk"):
            check_range(f"train.{key}", getattr(self, key), 0)
        if self.instances == "prefix" and (self.window_stride or self.window_offsets):
            raise ConfigError("train.window_stride and train.window_offsets need "
                              "train.instances=window")
        if self.label_smoothing and self.loss != "ce":
            raise ConfigError("train.label_smoothing needs train.loss=ce")
        check_reweight(self.reweight, self.atjt)
