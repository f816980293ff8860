import io

from rich.console import Console

from conftest import classify_run
from conftest import regress_run as regress
from losslab.commands.regress import report as regress_report
from losslab.config import OptimConfig, RegressConfig, TrainConfig
from losslab.outputs.display import Column, ProgressDisplay, epoch_columns


def _plain_console():
    return Console(file=io.StringIO(), force_terminal=False, width=100)


def test_plain_progress_prints_about_ten_lines_whatever_the_epoch_count():
    console = _plain_console()
    display = ProgressDisplay(console, epoch_columns([Column("w", "w"), Column("b", "b")]))
    result = regress(RegressConfig(optim=OptimConfig("adam", lr=0.01), train=TrainConfig(epochs=1000, device="cpu")),
                     consumers=[display])
    lines = console.file.getvalue().splitlines()
    assert 5 <= len(lines) <= 12
    assert lines[0].startswith("epoch 1/1000") and lines[-1].startswith("epoch 1000/1000")
    assert "\x1b[" not in console.file.getvalue()
    assert result.status == "ok"


def test_quiet_prints_nothing():
    console = _plain_console()
    regress(RegressConfig(train=TrainConfig(epochs=50, device="cpu")),
            consumers=[ProgressDisplay(console, epoch_columns([]), quiet=True)])
    assert console.file.getvalue() == ""


def test_live_table_renders_milestones_and_current_row():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    display = ProgressDisplay(console, epoch_columns([Column("w", "w")]), live=True)
    regress(RegressConfig(train=TrainConfig(epochs=200, device="cpu")), consumers=[display])
    text = console.file.getvalue()
    assert "200/200" in text and "grad norm" in text


def test_report_shows_learned_true_and_optimum():
    result = regress(RegressConfig(optim=OptimConfig("lbfgs"), train=TrainConfig(epochs=5, device="cpu")))
    text = regress_report(result).plain()
    w_line = next(line for line in text.splitlines() if line.startswith("w "))
    learned, true, optimum = w_line.split()[1:4]
    assert true == "2"
    assert abs(float(learned) - float(optimum)) < 1e-4
    assert "lbfgs" in text and "ok" in text


def test_slow_epochs_show_batch_progress_off_a_terminal_and_in_the_live_caption():
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig
    from losslab.outputs.display import classify_columns

    console = _plain_console()
    display = ProgressDisplay(console, classify_columns())
    display.plain_every = 0.0  # every batch counts as slow here
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig("mlp", hidden=8),
                         train=TrainConfig(epochs=2, batch_size=40, device="cpu"))
    classify_run(cfg, consumers=[display])
    lines = console.file.getvalue().splitlines()
    assert "epoch 1/2  batch 1/4  loss" in lines[0]  # 160 training samples / 40 = 4 batches
    assert not any("batch 4/4" in line for line in lines)  # the epoch line replaces the last batch
    display._render()
    assert display.bar is not None and display.bar.progress.tasks[0].description == "done: 2 epochs"
    display.finished, display.batch = None, (2, 4, 0.5)  # (as while epoch 3 ran)
    display._render()
    assert display.bar.progress.tasks[0].description.startswith("epoch 3/2: batch 2/4, loss 0.5")


def test_many_run_reports_fit_an_80_column_terminal():
    import re

    from losslab.commands import compare_optimizers, lr_sweep
    from losslab.config import ClassifyConfig, ClassifyDataConfig, CompareConfig, SweepConfig
    from losslab.engine.problems import build_problem

    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    cfg = CompareConfig(run=RegressConfig(train=TrainConfig(epochs=50, device="cpu")), seeds=2, tune=True,
                        tune_grid=(0.01, 0.1)).resolved()
    reports = compare_optimizers.report(compare_optimizers.compare(cfg, build_problem(cfg.run)))
    cfg = CompareConfig(run=ClassifyConfig(data=ClassifyDataConfig(subset=200), train=TrainConfig(
        epochs=1, batch_size=64, device="cpu")), seeds=2).resolved()
    reports += compare_optimizers.report(compare_optimizers.compare(cfg, build_problem(cfg.run)))
    cfg = SweepConfig(run=RegressConfig(train=TrainConfig(epochs=50, device="cpu")), num=6, seeds=2).resolved()
    reports += lr_sweep.grid_report(lr_sweep.grid_sweep(cfg, build_problem(cfg.run)))
    for report in reports:
        report.render(console)
    text = re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "0.01 (tuned)" in text or "0.1 (tuned)" in text  # the cells are whole, not cut


def test_the_live_table_keeps_layer_columns_for_wide_terminals_only():
    import io

    from rich.console import Console

    from losslab.outputs.display import ProgressDisplay, epoch_columns

    def keys(width):
        console = Console(file=io.StringIO(), width=width, force_terminal=True)
        return [c.key for c in ProgressDisplay(console, epoch_columns([]), live=True).columns]

    assert "layer_min" not in keys(80) and "layer_max" not in keys(80)
    assert "layer_min" in keys(140) and "layer_max" in keys(140)


def test_the_time_left_leaves_out_the_first_steps_warm_up_and_a_stopped_runs_bar_ends_where_it_stopped(monkeypatch):
    """A first epoch of 5 s (torch's warm-up) then faster ones: the estimate is the pace after the first (7 × 0.35
    s), not 5.7 s / 3 epochs × 7; none before SETTLE_S of steps; early stopping ends the bar's text there."""
    from types import SimpleNamespace

    from losslab.engine.events import RunInfo
    from losslab.outputs import display as module
    from losslab.outputs.display import duration

    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    display = ProgressDisplay(_plain_console(), module.epoch_columns([]), live=False)
    display.on_run_begin(RunInfo("regress", epochs=10))
    texts = []
    for epoch, at in [(1, 5.0), (2, 5.2), (3, 5.7)]:
        clock[0] = at
        display.on_epoch_end(RunInfo("regress", epochs=10), {"epoch": epoch, "train_loss": 1.0, "elapsed_s": at})
        texts.append(display._eta())
    assert texts[:2] == ["", ""]  # the first epoch alone, then 0.2 s of pace: no estimate yet
    assert texts[2] == f", about {duration(7 * 0.35)} left" and "13 s" not in texts[2]
    display.on_run_end(RunInfo("regress", epochs=10), SimpleNamespace(status="ok", stopped_early=True))
    assert display.finished == "stopped early at epoch 3/10 (no better validation loss)"
    assert [duration(s) for s in (0.2, 8.4, 125, 3840)] == ["<1 s", "8 s", "2 min 05 s", "1 h 04 min"]


def test_many_run_rows_say_runs_done_epoch_of_total_and_whose_loss():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from losslab.engine.events import RunInfo
    from losslab.outputs.display import TrialsDisplay

    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    display = TrialsDisplay(console, live=False)
    display.plan(["sgd"], 2)
    run = RunInfo("compare-optimizers", group="sgd", epochs=10, total=2)
    display.on_run_begin(run)
    display.on_epoch_end(run, {"epoch": 4, "train_loss": 0.5})
    rendered = Console(file=io.StringIO(), width=100, record=True)
    rendered.print(display.table())
    text = rendered.export_text()
    assert "runs done" in text and "train loss (latest)" in text and "4/10" in text and "0/2" in text
    display.on_run_end(run, SimpleNamespace(status="ok", metrics={}, error=None, epochs_run=10, elapsed_s=0.1))
    assert display.rows["sgd"]["status"] == "running" and display.rows["sgd"]["done"] == 1  # one seed still to go
    display.on_run_begin(run)
    display.on_run_end(run, SimpleNamespace(status="ok", metrics={}, error=None, epochs_run=10, elapsed_s=0.1))
    assert display.rows["sgd"]["status"] == "done"


def test_off_a_terminal_a_many_run_display_prints_a_line_while_runs_train(monkeypatch):
    """A CI log hears from stacked runs that finish none for minutes: a line when none came for pulse.EVERY s."""
    import time

    from losslab.engine.events import RunInfo
    from losslab.outputs.display import PlainConsole, TrialsDisplay

    out = io.StringIO()
    display = TrialsDisplay(PlainConsole(out))
    from losslab.outputs import pulse

    monkeypatch.setattr(pulse, "EVERY", 0.2)
    display.plan(["adam", "sgd"], 1)
    with display:
        run = RunInfo("compare-optimizers", group="adam", index=0, total=2, epochs=50)
        display.on_run_begin(run)
        display.on_epoch_end(run, {"epoch": 7, "train_loss": 0.5})
        time.sleep(1.5)
    lines = out.getvalue().splitlines()
    # (no time left: one epoch gives no pace yet — the first epoch carries the warm-up)
    assert lines and lines[0] == "… 0 of 2 runs done; training adam epoch 7/50"
    quiet = io.StringIO()
    with TrialsDisplay(PlainConsole(quiet), quiet=True) as silent:
        silent.on_run_begin(run)
        time.sleep(1.2)
    assert quiet.getvalue() == ""
