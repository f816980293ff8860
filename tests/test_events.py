"""One event protocol: a consumer registered once sees every command's runs, stacked trials and the range test."""

from __future__ import annotations

import pytest

from losslab.engine.events import Consumer, Dispatcher, RunInfo
from losslab.outputs import CONSUMERS


class Spy(Consumer):
    """Test-only sink: what a TensorBoard writer or any other output would receive."""

    instances: list["Spy"] = []

    def __init__(self, ctx):
        self.command = ctx.command
        self.begun: list[RunInfo] = []
        self.records: dict[str, list[dict]] = {}
        self.ended: dict[str, str] = {}
        self.command_events: list[tuple] = []
        self.batches: dict[str, list[tuple[int, int]]] = {}
        self.batch_epochs: dict[str, list[int]] = {}
        Spy.instances.append(self)

    def on_command_begin(self, command):
        self.command_events.append(("begin", command))

    def on_command_end(self, command, status, document):
        self.command_events.append(("end", command, status, document.get("command")))

    def on_run_begin(self, run):
        self.begun.append(run)

    def on_batch_end(self, run, epoch, batch, batches, loss):
        assert run.label in {r.label for r in self.begun} and run.label not in self.ended
        self.batches.setdefault(run.label, []).append((batch, batches))
        self.batch_epochs.setdefault(run.label, []).append(epoch)

    def on_epoch_end(self, run, record):
        assert run.label in {r.label for r in self.begun} and run.label not in self.ended
        self.records.setdefault(run.label, []).append(dict(record))

    def on_run_end(self, run, result):
        self.ended[run.label] = result.status


@pytest.fixture
def spy():
    Spy.instances = []
    CONSUMERS.register("test-spy", "records every event (tests only)")(Spy)
    yield Spy.instances
    del CONSUMERS._entries["test-spy"]  # the registry has no public removal: plug-ins stay for the process


def test_regress_and_classify_runs_reach_a_registered_consumer(cli, spy):
    assert cli("regress", "--epochs", "7", "--quiet", "--device", "cpu").exit_code == 0
    assert cli("classify", "--epochs", "2", "--subset", "200", "--quiet", "--device", "cpu").exit_code == 0
    regress, classify = spy
    assert regress.command == "regress" and classify.command == "classify"
    [(label, records)] = regress.records.items()
    assert label == "sgd-lr0.1-seed0" and [r["epoch"] for r in records] == list(range(1, 8))
    assert {"train_loss", "w", "b", "grad_norm", "lr"} <= set(records[0]) and regress.ended[label] == "ok"
    [records] = classify.records.values()
    assert len(records) == 2 and "valid_acc" in records[-1] and "valid_loss_best" in records[-1]


@pytest.mark.parametrize("vectorize", [[], ["--no-vectorize"]])
def test_every_trial_of_compare_reaches_it_stacked_or_not(cli, spy, vectorize):
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "5", "--quiet",
              "--device", "cpu", *vectorize)
    assert run.exit_code == 0, run.stderr
    [compare] = spy
    assert sorted(compare.records) == ["adam-lr0.01-seed0", "adam-lr0.01-seed1", "sgd-lr0.1-seed0",
                                       "sgd-lr0.1-seed1"]
    assert all(len(r) == 5 for r in compare.records.values()) and set(compare.ended.values()) == {"ok"}
    stacked = {run.stacked_with for run in compare.begun}
    assert stacked == ({4} if not vectorize else {1})
    assert sorted(run.index for run in compare.begun) == [0, 1, 2, 3] and {r.total for r in compare.begun} == {4}


def test_lr_sweep_grid_and_range_test_reach_it(cli, spy):
    assert cli("lr-sweep", "--lrs", "0.01,0.1", "--epochs", "4", "--quiet", "--device", "cpu").exit_code == 0
    assert cli("lr-sweep", "--range-test", "--steps", "30", "--quiet", "--device", "cpu").exit_code == 0
    grid, range_test = spy
    assert sorted(grid.records) == ["sgd-lr0.01-seed0", "sgd-lr0.1-seed0"]
    assert all(len(r) == 4 for r in grid.records.values())
    [records] = range_test.records.values()
    lrs = [r["lr"] for r in records]
    assert len(records) >= 10 and lrs == sorted(lrs) and lrs[0] < lrs[-1]  # one step per epoch, rate growing


def test_dispatcher_asks_every_consumer_and_stops_when_one_asks():
    calls = []

    class A(Consumer):
        def on_epoch_end(self, run, record):
            calls.append("a")
            return True

    class B(Consumer):
        def on_epoch_end(self, run, record):
            calls.append("b")

    assert Dispatcher([A(), B()]).on_epoch_end(RunInfo("x"), {}) is True
    assert calls == ["a", "b"]
    assert Dispatcher([B()]).on_epoch_end(RunInfo("x"), {}) is False
    assert RunInfo("x", key=(("optimizer", "adam"), ("lr", 0.01), ("seed", 3))).label == "adam-lr0.01-seed3"


def test_compare_losses_runs_reach_it_with_their_loss_in_the_label(cli, spy):
    assert cli("compare-losses", "--losses", "mse,l1", "--seeds", "1", "--epochs", "3", "--quiet").exit_code == 0
    [consumer] = spy
    assert consumer.command == "compare-losses"
    assert sorted(consumer.records) == ["sgd-l1-lr0.1-seed0", "sgd-mse-lr0.1-seed0"]


COMMANDS = {
    "regress": ["regress", "--epochs", "3"],
    "classify": ["classify", "--epochs", "1", "--subset", "100"],
    "compare-optimizers": ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "1", "--epochs", "3"],
    "compare-losses": ["compare-losses", "--losses", "mse,l1", "--seeds", "1", "--epochs", "3"],
    "lr-sweep": ["lr-sweep", "--lrs", "0.01,0.1", "--epochs", "3"],
    "lr-sweep --range-test": ["lr-sweep", "--range-test", "--steps", "20"],
    "check-loss": ["check-loss", "torch.nn.functional:mse_loss"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_begins_and_ends_once_for_a_registered_consumer(cli, spy, name):
    args = COMMANDS[name]
    run = cli(*args, "--json", *(["--quiet", "--device", "cpu"] if args[0] != "check-loss" else []))
    assert run.exit_code == 0, run.stderr
    [seen] = spy
    status = run.json()["status"]
    assert seen.command_events == [("begin", args[0]), ("end", args[0], status, args[0])]
    if args[0] != "check-loss":
        assert seen.ended and seen.records  # runs and epochs came between the two
        assert {run.command for run in seen.begun} == {args[0]}  # named by the command's begin event


@pytest.mark.slow
def test_replay_begins_and_ends_too(cli, spy, tmp_path):
    assert cli("regress", "--epochs", "3", "--out", str(tmp_path / "o"), "--quiet", "--no-plot").exit_code == 0
    run = cli("replay", str(tmp_path / "o" / "result.json"))
    assert run.exit_code == 0, run.stdout
    assert spy[-1].command_events == [("begin", "replay"), ("end", "replay", "identical", "replay")]
    same = cli("diff", str(tmp_path / "o" / "result.json"), str(tmp_path / "o" / "result.json"))
    assert same.exit_code == 0, same.stderr
    assert spy[-1].command_events == [("begin", "diff"), ("end", "diff", "ok", "diff")]


MINI_BATCH = {
    "regress": ["regress", "--epochs", "3", "--batch-size", "25"],
    "classify": ["classify", "--epochs", "2", "--subset", "200", "--batch-size", "64"],
    "lr-sweep --range-test": ["lr-sweep", "--range-test", "--steps", "12", "--batch-size", "25"],
    "compare-optimizers stacked": ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "3",
                                   "--batch-size", "25"],
    "compare-losses one by one": ["compare-losses", "--losses", "mse,l1", "--seeds", "1", "--epochs", "3",
                                  "--batch-size", "25", "--no-vectorize"],
}


@pytest.mark.parametrize("name", list(MINI_BATCH))
def test_batch_events_come_from_every_engine_between_a_runs_begin_and_end(cli, spy, name):
    run = cli(*MINI_BATCH[name], "--quiet", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    [seen] = spy
    assert seen.batches and set(seen.batches) == set(seen.records)
    for label, batches in seen.batches.items():
        per_epoch = batches[0][1]
        assert per_epoch > 1 and {b for _, b in batches} == {per_epoch}
        if "--range-test" not in name:  # (the range test stops inside its last epoch)
            assert batches == [(b, per_epoch) for _ in seen.records[label] for b in range(1, per_epoch + 1)]
            # each batch says its epoch (a stacked batch was once tagged "epoch 1" by a batch consumer)
            assert seen.batch_epochs[label] == [r["epoch"] for r in seen.records[label] for _ in range(per_epoch)]


@pytest.mark.slow
@pytest.mark.parametrize("vectorize", [[], ["--no-vectorize"]])
def test_a_worker_process_forwards_every_event_of_its_runs(cli, spy, vectorize):
    args = ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "4", "--batch-size", "25",
            "--quiet", "--device", "cpu", "--json", *vectorize]
    local = cli(*args)
    pooled = cli(*args, "--executor", "process", "--jobs", "2")
    assert local.exit_code == pooled.exit_code == 0, pooled.stderr
    here, there = spy
    assert sorted(there.records) == sorted(here.records) and set(there.ended.values()) == {"ok"}
    for label, records in here.records.items():
        drop = ("elapsed_s",)
        assert [{k: v for k, v in r.items() if k not in drop} for r in there.records[label]] == \
            [{k: v for k, v in r.items() if k not in drop} for r in records]
        assert there.batches[label] == here.batches[label] == [(b, 4) for _ in range(4) for b in range(1, 5)]
        assert there.batch_epochs[label] == here.batch_epochs[label] == [e for e in range(1, 5) for _ in range(4)]
    assert sorted(r.index for r in there.begun) == list(range(4))
    assert {r.command for r in there.begun} == {"compare-optimizers"}
