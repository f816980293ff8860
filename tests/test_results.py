import csv
import io
import json
import os

import pytest

from losslab.outputs.files import atomic_write, dumps, history_csv, write_text


def test_json_has_no_nan():
    text = dumps({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.5}})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 2.5}}


def test_atomic_write_replaces_whole_file_and_cleans_up_on_failure(tmp_path):
    path = tmp_path / "result.json"
    write_text(path, "first")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "first"
    assert os.listdir(tmp_path) == ["result.json"]


def test_history_csv_round_trips_floats_and_columns():
    records = [{"epoch": 1, "train_loss": 0.1 + 0.2, "w": 1.5}, {"epoch": 2, "train_loss": float("nan"), "w": 1.6}]
    rows = list(csv.DictReader(io.StringIO(history_csv(records))))
    assert list(rows[0]) == ["epoch", "train_loss", "w"]
    assert float(rows[0]["train_loss"]) == 0.1 + 0.2
    assert rows[1]["train_loss"] == "nan"
