"""Evaluation protocols (``protocol.py``) and the leave-one-out mechanics they split with
(``splits.py``)."""

from denoiserec.protocols.protocol import (
    PROTOCOL_NAMES,
    PROTOCOLS,
    EvalSet,
    Protocol,
    ProtocolConfig,
    Split,
    exclude_unrankable,
    inert_settings,
    protocol_of,
    split,
)
from denoiserec.protocols.splits import leave_one_out, protocol_negatives

__all__ = ["PROTOCOLS", "PROTOCOL_NAMES", "EvalSet", "Protocol", "ProtocolConfig", "Split",
           "exclude_unrankable", "inert_settings", "leave_one_out", "protocol_negatives",
           "protocol_of", "split"]
