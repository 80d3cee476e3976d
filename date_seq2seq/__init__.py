"""date_seq2seq: a character-level seq2seq model with attention that rewrites dates.

`yy-mm-dd` (24-11-22) in, `dd/Mon/yyyy` (22/Nov/2024) out:

    >>> import date_seq2seq as ds
    >>> ds.Converter.default().convert("24-11-22").output
    '22/Nov/2024'

The parts, in the order they are built on each other: the data (`DateDataset`,
a torch Dataset), the model (`Seq2Seq`) and its one decoding loop (`unroll`
with a feed policy), decoding (`greedy`, `beam_search`), training (`fit`,
`train`, `Trainer`), metrics, checkpoints (`save`, `load`), and the facade
the app and the command line use (`Converter`).
"""

from .checkpoint import Checkpoint, CheckpointError, load, save
from .config import DataConfig, DecodeConfig, ModelConfig, TrainConfig
from .converter import BeamView, Conversion, Converter, StepThrough
from .data import (
    DateDataset,
    InputError,
    parse_source,
    source_text,
    target_text,
    task_vocabulary,
)
from .decoding import (
    Decoded,
    beam_hypotheses,
    beam_search,
    greedy,
    greedy_many,
    step_through,
)
from .forms import FORMS, parse_human
from .metrics import bleu, exact_match, field_accuracy, summarize, token_accuracy
from .model import (
    FreeRunning,
    Imposed,
    ScheduledSampling,
    Seq2Seq,
    TeacherForcing,
    unroll,
)
from .training import Progress, Trainer, TrainResult, default_configs, fit, train
from .vocab import Vocabulary

__version__ = "0.4.0"


__all__ = [
    "BeamView",
    "Checkpoint",
    "CheckpointError",
    "Conversion",
    "Converter",
    "DataConfig",
    "DateDataset",
    "DecodeConfig",
    "Decoded",
    "FORMS",
    "FreeRunning",
    "Imposed",
    "InputError",
    "ModelConfig",
    "Progress",
    "ScheduledSampling",
    "Seq2Seq",
    "StepThrough",
    "TeacherForcing",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "Vocabulary",
    "__version__",
    "beam_hypotheses",
    "beam_search",
    "bleu",
    "default_configs",
    "exact_match",
    "field_accuracy",
    "fit",
    "greedy",
    "greedy_many",
    "load",
    "parse_human",
    "parse_source",
    "save",
    "source_text",
    "step_through",
    "summarize",
    "target_text",
    "task_vocabulary",
    "token_accuracy",
    "train",
    "unroll",
]
