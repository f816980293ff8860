"""The table of tasks (components/tasks.py) is what the CLI, compare-losses and the problems read about a task."""

from dataclasses import replace

import pytest

from losslab.cli.options import task_only
from losslab.components import tasks
from losslab.config import LOSS_RANKINGS, ClassifyConfig, RegressConfig, TrainConfig
from losslab.config.lm import LMConfig, LMModelConfig
from losslab.engine.problems import ClassificationProblem, RegressionProblem, build_problem


def test_each_tasks_record_gives_its_options_rankings_and_problem():
    regression, classification = tasks.task("regress"), tasks.task("Classification")
    assert (regression.name, classification.flag) == ("regression", "classify")
    assert LOSS_RANKINGS == {t.name: t.rankings for t in tasks.TASKS}
    assert task_only("depth") == "classify" and task_only("true_w") == "regress" and task_only("loss") is None
    assert task_only("block_size") == "lm" and task_only("hidden") is None  # (the mlp's and the rnn's)
    assert isinstance(build_problem(RegressConfig().resolved()), RegressionProblem)
    cfg = ClassifyConfig().resolved()
    assert isinstance(build_problem(replace(cfg, train=replace(cfg.train, device="cpu"))), ClassificationProblem)
    lm = LMConfig(model=LMModelConfig(layers=1, embed=16, heads=2), train=TrainConfig(device="cpu", batch_size=4))
    assert type(build_problem(lm.resolved())).__name__ == "LMProblem"


def test_an_unknown_task_is_one_line_with_the_choices():
    with pytest.raises(Exception, match=r"--task: unknown task 'regresion' \(did you mean regress"):
        tasks.task("regresion")


def test_the_cli_reads_the_task_table(cli):
    cli("compare-losses", "--task", "clasify").assert_usage_error("--task")
    doc = cli("compare-losses", "--task", "classify", "--subset", "120", "--epochs", "1", "--seeds", "1",
              "--json", "--quiet").json()
    assert set(doc["losses"]) == set(tasks.task("classify").default_losses)  # (ranked)
    assert doc["rank_by"] == tasks.task("classify").rankings[0]
