"""Experiment files (--config, --print-config) and `losslab replay`, through the real CLI."""

import json

import pytest

# replay reruns each command in a fresh process: `make test-fast` leaves these out
pytestmark = pytest.mark.slow

SMALL = {
    "regress": ["--epochs", "30"],
    "classify": ["--dataset", "blobs", "--epochs", "3", "--model", "mlp", "--dropout", "0.1"],
    "compare-optimizers": ["--optims", "sgd,adam", "--seeds", "2", "--epochs", "20"],
    "compare-losses": ["--losses", "mse,l1", "--seeds", "2", "--epochs", "20"],
    "lr-sweep": ["--lrs", "0.01,0.1", "--epochs", "20"],
}


@pytest.mark.parametrize("command", list(SMALL))
def test_print_config_round_trips_through_config(cli, tmp_path, command):
    first = cli(command, *SMALL[command], "--expect", "final_loss>=0", "--print-config")
    assert first.exit_code == 0, first.stderr
    path = tmp_path / "exp.toml"
    path.write_text(first.stdout)
    again = cli(command, "--config", str(path), "--print-config")
    assert again.exit_code == 0 and again.stdout == first.stdout


def test_the_file_sets_options_and_the_command_line_overrides_it(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('optim = "adam"\n[regress]\nepochs = 7\nlr = 0.05\nexpect = ["w>=0"]\n')
    doc = cli("regress", "--config", str(path), "--json").json()
    assert doc["epochs_run"] == 7 and doc["config"]["optim"] == {**doc["config"]["optim"], "name": "adam", "lr": 0.05}
    assert [e["spec"] for e in doc["expectations"]] == ["w>=0"]
    doc = cli("regress", "--config", str(path), "--epochs", "4", "--json").json()
    assert doc["epochs_run"] == 4


@pytest.mark.parametrize("text, needle", [
    ("[regress]\nlrr = 0.1\n", "unknown key 'lrr'"),
    ("[regress]\nlr = \"fast\"\n", "lr must be float"),
    ("[regres]\nlr = 0.1\n", "unknown table [regres]"),
    ("[regress]\nepochs = 1.5\n", "epochs must be int"),
    ("lr = \n", "not valid TOML"),
])
def test_bad_files_name_the_key(cli, tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    run = cli("regress", "--config", str(path))
    run.assert_usage_error("--config")
    assert needle in run.stderr
    cli("regress", "--config", str(tmp_path / "missing.toml")).assert_usage_error("--config")


@pytest.mark.parametrize("command", list(SMALL))
def test_replay_reproduces_every_command_bit_for_bit(cli, tmp_path, command):
    out = tmp_path / "o"
    run = cli(command, *SMALL[command], "--out", str(out), "--quiet")
    assert run.exit_code == 0, run.stderr
    replay = cli("replay", str(out / "result.json"), "--json")
    assert replay.exit_code == 0, (replay.stdout, replay.stderr)
    doc = replay.json()
    assert doc["identical"] and doc["compared"] > 20 and doc["replayed"] == command


def test_replay_finds_an_edited_number_and_warns_about_another_version(cli, tmp_path):
    out = tmp_path / "o"
    assert cli("regress", "--epochs", "50", "--out", str(out), "--quiet").exit_code == 0
    doc = json.loads((out / "result.json").read_text())
    recorded = doc["params"]["b"]
    doc["params"]["b"] = recorded * (1 + 1e-6)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    run = cli("replay", str(edited))
    assert run.exit_code == 1 and "differs at params.b" in run.stdout
    assert cli("replay", str(edited), "--rtol", "1e-5").exit_code == 0
    doc["params"]["b"] = recorded
    doc["versions"]["losslab"] = "0.0.1"
    edited.write_text(json.dumps(doc))
    run = cli("replay", str(edited))
    assert run.exit_code == 0 and "losslab 0.0.1" in run.stderr and "warning" in run.stderr
    cli("replay", str(edited), "--rtol", "-1").assert_usage_error("--rtol")
    (tmp_path / "plain.json").write_text("{}")
    cli("replay", str(tmp_path / "plain.json")).assert_usage_error("invocation")


def test_a_new_command_gets_its_config_table_from_its_one_registration(cli, tmp_path):
    """A command registered once (`cli.typer_app.command`) is on the command line and reads its [table] of a
    --config file, with no list elsewhere to edit."""
    from losslab.cli import typer_app
    from losslab.cli.experiment import TABLES

    seen = {}

    @typer_app.command("toy-command", "seeds", "epochs", "config", "print_config")
    def toy_command(given):
        seen.update(seeds=given.seeds, epochs=given.epochs)
        return 0

    try:
        path = tmp_path / "toy.toml"
        path.write_text("[toy-command]\nseeds = 7\n")
        run = cli("toy-command", "--config", str(path), "--epochs", "3")
        assert run.exit_code == 0, run.stderr
        assert seen == {"seeds": 7, "epochs": 3}
        path.write_text("[toy]\nseeds = 7\n")
        cli("toy-command", "--config", str(path)).assert_usage_error("--config")
    finally:
        typer_app.app.registered_commands.pop()
        TABLES.remove("toy-command")


def test_toml_arrays_other_tables_and_what_print_config_leaves_out(cli, tmp_path):
    arrays = tmp_path / "arrays.toml"
    arrays.write_text('[compare-optimizers]\noptims = ["sgd", "adam"]\nseeds = 1\nepochs = 3\n')
    run = cli("compare-optimizers", "--config", str(arrays), "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.json()["config"]["optims"] == ["sgd", "adam"]
    other = tmp_path / "other.toml"
    other.write_text("[classify]\nepochs = 3\n")
    run = cli("regress", "--config", str(other))
    run.assert_usage_error("--config")
    assert "[classify]" in run.stderr
    text = cli("regress", "--print-config", "--json").stdout
    assert "json" not in text and "quiet" not in text and "epochs = 1000" in text
