"""Frozen, validated run configurations: built once at the CLI edge, passed down unchanged, written into every result.

`__post_init__` validates and never changes a field; defaults that depend on other fields (the optimizer's rate
for the task, the dataset's epochs and model, the sweep's range) are filled in by `resolved()`, which returns a
new config and is idempotent. Every command runs on a resolved config. Sits above the component registries
(it checks names against them) and below the engine.

The package: `checks` (validators), `parsing` (option text to values), `files` (file-system checks before a run),
`parts` (optimizer, loss, schedule, loop, executor, gates), `single` (regress and classify configs) and `many`
(the many-run configs). Everything is importable from `losslab.config`.
"""

from losslab.config.checks import (
    MAX_DATA_SEED,
    MAX_SEED,
    RECORD_BYTES,
    check_finite,
    check_memory,
    check_non_negative,
    check_positive,
    check_target,
    default_of,
    memory_bytes,
)
from losslab.config.files import (
    OUT_RECORD_BYTES,
    PLOT_BYTES,
    TENSORBOARD_RECORD_BYTES,
    check_file_target,
    check_out_dir,
    check_space,
)
from losslab.config.many import (
    BUDGETS,
    LOSS_RANKINGS,
    CompareConfig,
    CompareLossesConfig,
    LandscapeConfig,
    SweepConfig,
)
from losslab.config.parsing import (
    log_grid,
    parse_floats,
    parse_grid,
    parse_ints,
    parse_lr_for,
)
from losslab.config.parts import (
    CLASSIFY_DEFAULTS,
    DEVICES,
    EXECUTORS,
    LM_DEFAULTS,
    REGRESS_DEFAULTS,
    ExecutorConfig,
    GateConfig,
    LossConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from losslab.config.single import (
    FOLDER_DATASETS,
    REGRESSION_DATASETS,
    ClassifyConfig,
    ClassifyDataConfig,
    ClassifyLossConfig,
    ModelConfig,
    RegressConfig,
    RegressDataConfig,
    RunConfig,
)

__all__ = [
    "BUDGETS",
    "CLASSIFY_DEFAULTS",
    "LM_DEFAULTS",
    "ClassifyConfig",
    "ClassifyDataConfig",
    "ClassifyLossConfig",
    "CompareConfig",
    "CompareLossesConfig",
    "DEVICES",
    "EXECUTORS",
    "ExecutorConfig",
    "FOLDER_DATASETS",
    "GateConfig",
    "LOSS_RANKINGS",
    "LossConfig",
    "MAX_DATA_SEED",
    "MAX_SEED",
    "ModelConfig",
    "OUT_RECORD_BYTES",
    "OptimConfig",
    "PLOT_BYTES",
    "RECORD_BYTES",
    "REGRESSION_DATASETS",
    "REGRESS_DEFAULTS",
    "RegressConfig",
    "RegressDataConfig",
    "RunConfig",
    "ScheduleConfig",
    "SweepConfig",
    "LandscapeConfig",
    "TENSORBOARD_RECORD_BYTES",
    "TrainConfig",
    "check_file_target",
    "check_finite",
    "check_memory",
    "check_non_negative",
    "check_out_dir",
    "check_positive",
    "check_space",
    "check_target",
    "default_of",
    "log_grid",
    "memory_bytes",
    "parse_floats",
    "parse_ints",
    "parse_grid",
    "parse_lr_for",
]
