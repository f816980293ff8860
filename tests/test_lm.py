"""`losslab lm` and `--task lm` (issue 34): the training loop against hand-written loops, the bigram against
counting, the reported figures against their definitions, a user's model and token data, every command, and bad
input refused in one line before training."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

import losslab
from losslab.components.lm_models import LMShape, build_lm
from losslab.config.lm import LMConfig, LMDataConfig, LMModelConfig
from losslab.config.parts import OptimConfig, ScheduleConfig, TrainConfig
from losslab.engine.lm_problem import LMProblem

TINY = {"layers": 1, "heads": 2, "embed": 32, "hidden": 32, "block_size": 16, "batch_size": 4, "eval_every": 5,
        "eval_batches": 2, "epochs": 2, "sample": 0, "device": "cpu"}


def text_file(tmp_path, text, name="t.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def markov_text(length=6000, seed=0):
    """A text from a random first-order Markov chain over six letters: its bigram statistics are all there is."""
    rng = np.random.default_rng(seed)
    letters = "abcdef"
    table = rng.dirichlet(np.ones(6) * 0.5, size=6)
    out, state = [], 0
    for _ in range(length):
        state = rng.choice(6, p=table[state])
        out.append(letters[state])
    return "".join(out)


def hand_loop(model_name, cfg, steps, clip=None):
    """nanoGPT's loop written out: get_batch from a generator seeded like the run, cross-entropy on flattened
    logits, AdamW's own step, optional clipping."""
    problem = LMProblem(cfg)
    ids = problem.data.train_ids
    block, batch = cfg.data.block_size, cfg.train.batch_size
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    model = build_lm(model_name, LMShape(vocab=problem.vocab, block_size=block, embed=m.embed, heads=m.heads,
                                         layers=m.layers, hidden=m.hidden))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    g = torch.Generator().manual_seed(cfg.train.seed)
    for _ in range(steps):
        starts = torch.randint(len(ids) - block, (batch,), generator=g)
        x = torch.stack([ids[s:s + block] for s in starts.tolist()])
        y = torch.stack([ids[s + 1:s + 1 + block] for s in starts.tolist()])
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    return model


def lm_config(tmp_path, model="gpt", clip=None, **data):
    text = text_file(tmp_path, markov_text(4000))
    return LMConfig(data=LMDataConfig(text=text, block_size=16, eval_every=5, eval_batches=2, **data),
                    model=LMModelConfig(name=model, layers=1, heads=2, embed=32, hidden=32),
                    optim=OptimConfig("adamw", lr=3e-3),
                    train=TrainConfig(epochs=2, batch_size=4, device="cpu", clip_grad_norm=clip)).resolved()


@pytest.mark.parametrize("model,clip", [("gpt", 1.0), ("lstm", None)])
def test_the_loop_equals_a_hand_written_loop_bit_for_bit(tmp_path, model, clip):
    from losslab.commands.lm import run

    cfg = lm_config(tmp_path, model, clip)
    result = run(cfg)
    assert result.status == "ok" and result.steps == 10
    reference = hand_loop(model, cfg, 10, clip)
    for (name, a), (_, b) in zip(result.model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_bigram_trained_to_convergence_equals_the_counted_bigram(tmp_path):
    """Windows of one token make every training transition equally likely: the minimum of the expected loss is
    the counted bigram's cross-entropy on the training split."""
    from losslab.commands.lm import run

    text = markov_text(3000, seed=1)
    cfg = LMConfig(data=LMDataConfig(text=text_file(tmp_path, text), block_size=1, eval_every=50, eval_batches=1),
                   model=LMModelConfig(name="bigram"), optim=OptimConfig("adam", lr=0.1),
                   train=TrainConfig(epochs=20, batch_size=2048, device="cpu",
                                     schedule=ScheduleConfig("cosine"))).resolved()
    result = run(cfg)
    problem = LMProblem(cfg)
    ids = problem.data.train_ids.numpy()
    counts = np.zeros((problem.vocab, problem.vocab))
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    p = counts / counts.sum(axis=1, keepdims=True)
    counted = -np.mean(np.log(p[ids[:-1], ids[1:]]))
    with torch.no_grad():
        logits = result.model(torch.as_tensor(ids[:-1])[:, None])[:, 0].double()
        learned = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(ids[1:])))
    assert abs(learned - counted) <= 1e-3


def test_reported_figures_follow_their_definitions_and_the_baselines_are_counted(tmp_path):
    result = losslab.lm(data=text_file(tmp_path, markov_text(4000)), **TINY, progress=False)
    doc = result.document()
    assert doc["perplexity"] == pytest.approx(math.exp(doc["nll"]), rel=1e-12)
    assert doc["bits_per_char"] == pytest.approx(doc["nll"] / math.log(2), rel=1e-12)  # one character per token
    assert doc["final_loss"] == pytest.approx(doc["nll"], rel=1e-6)  # cross-entropy trains: the same number
    text = markov_text(4000)
    train, valid = text[:3600], text[3600:]
    vocab = sorted(set(train))
    assert doc["baselines"]["uniform"] == pytest.approx(math.log(len(vocab)))
    counts = {c: train.count(c) for c in vocab}
    unigram = -np.mean([math.log((counts[c] + 0.1) / (len(train) + 0.1 * len(vocab))) for c in valid])
    assert doc["baselines"]["unigram"] == pytest.approx(unigram, rel=1e-12)
    assert doc["tokens_evaluated"] == (len(valid) - 1) // 16 * 16
    assert len(result.history) == 2 and {"valid_loss", "valid_acc"} <= set(result.history[0])


def test_one_step_epochs_draw_windows_too(tmp_path):
    """--eval-every 1: an epoch of one batch is still a batch of random windows (not the whole text at once)."""
    result = losslab.lm(data=text_file(tmp_path, markov_text(4000)), **{**TINY, "eval_every": 1}, progress=False)
    assert result.status == "ok" and result.document()["steps"] == 2


def test_the_same_command_twice_gives_the_same_numbers_and_sample(tmp_path):
    args = dict(data=text_file(tmp_path, markov_text(4000)), **{**TINY, "sample": 40}, progress=False)
    a, b = losslab.lm(**args).document(), losslab.lm(**args).document()
    assert a["nll"] == b["nll"] and a["sample"] == b["sample"] and len(a["sample"]) == 40
    greedy = losslab.lm(**{**args, "temperature": 0.0}).document()["sample"]
    assert greedy == losslab.lm(**{**args, "temperature": 0.0, "seed": 0}).document()["sample"]


GRU = """
import torch
from torch import nn

class CharGRU(nn.Module):
    def __init__(self, vocab_size, hidden=24):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx):
        out, _ = self.gru(self.embed(idx))
        return self.head(out)

class WrongShape(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)

    def forward(self, idx):
        return self.embed(idx).mean(dim=1)

def tokens():
    return torch.arange(3000) % 7

def array_tokens():
    import numpy as np

    return (np.arange(3000) % 7).astype(np.int64)

def pieces():
    return [{"input_ids": torch.arange(50) % 5} for _ in range(60)]

def renamed():
    return [{"text": torch.arange(50) % 5} for _ in range(60)]
"""


def test_a_users_model_and_token_data(cli, tmp_path, monkeypatch):
    (tmp_path / "mylm.py").write_text(textwrap.dedent(GRU))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = text_file(tmp_path, markov_text(4000))
    small = ["--epochs", "2", "--eval-every", "5", "--eval-batches", "2", "--block-size", "16", "--batch-size",
             "4", "--sample", "20", "--device", "cpu", "--json"]
    run = cli("lm", "--model", "mylm:CharGRU", "--data", text, *small)
    assert run.exit_code == 0, run.stdout
    assert run.json()["status"] == "ok" and len(run.json()["sample"]) == 20
    wrong = cli("lm", "--model", "mylm:WrongShape", "--data", text, *small)
    wrong.assert_usage_error("--model")
    assert "next-token logits" in wrong.stderr
    for spec, vocab in (("mylm:tokens", 7), ("mylm:array_tokens", 7), ("mylm:pieces", 5)):
        run = cli("lm", "--dataset", spec, "--model", "bigram", *small[:-3], "--json", "--sample", "0")
        assert run.exit_code == 0, run.stdout
        assert run.json()["baselines"]["uniform"] == pytest.approx(math.log(vocab))
    keyed = cli("lm", "--dataset", "mylm:renamed", "--input-key", "text", "--model", "bigram", *small[:-3], "--json",
                "--sample", "0")
    assert keyed.exit_code == 0 and keyed.json()["baselines"]["uniform"] == pytest.approx(math.log(5))
    cli("lm", "--dataset", "mylm:renamed", "--model", "bigram", *small[:-3]).assert_usage_error("--dataset")
    cli("lm", "--input-key", "text").assert_usage_error("--input-key")  # (tiny Shakespeare has no dict items)


@pytest.mark.parametrize("args,option", [
    (["--data", "EMPTY"], "--data"), (["--data", "BINARY"], "--data"), (["--data", "LATIN1"], "--data"),
    (["--data", "SHORT"], "--block-size"), (["--prompt", "ROMEO: ☃"], "--prompt"), (["--temperature", "-1"],
                                                                                   "--temperature"),
    (["--heads", "3"], "--heads"), (["--model", "gtp"], "--model"), (["--tokenizer", "words"], "--tokenizer"),
    (["--top-k", "0"], "--top-k"), (["--target-accuracy", "0.5"], "--target-accuracy"),
    (["--z-loss", "2"], "--z-loss"), (["--eval-batches", "0"], "--eval-batches"),
    (["--block-size", "0"], "--block-size"), (["--sample", "-1"], "--sample"), (["--layers", "0"], "--layers"),
    (["--embed", "0"], "--embed"), (["--resume", "MISSING"], "--resume"), (["--dataset", "wikitext"], "--dataset"),
    (["--prompt", ""], "--prompt")])
def test_bad_input_is_one_line_before_training(cli, tmp_path, args, option):
    files = {"EMPTY": b"  \n", "BINARY": b"ab\x00cd" * 10, "LATIN1": "café".encode("latin-1") * 50,
             "SHORT": b"to be or not to be, that is the question" * 2}
    for key, content in files.items():
        (tmp_path / key).write_bytes(content)
    args = [str(tmp_path / a) if a in files else a for a in args]
    run = cli("lm", *args, "--epochs", "2", "--eval-every", "1")
    run.assert_usage_error(option)
    cli("lm", "--eval-every", "0").assert_usage_error("--eval-every")


@pytest.mark.slow
def test_every_many_run_command_takes_task_lm(cli, tmp_path):
    text = text_file(tmp_path, markov_text(4000))
    small = ["--task", "lm", "--data", text, "--epochs", "2", "--eval-every", "5", "--eval-batches", "2",
             "--block-size", "16", "--batch-size", "4", "--layers", "1", "--embed", "32", "--heads", "2",
             "--seeds", "1", "--json"]
    compared = cli("compare-optimizers", "--optims", "adamw,muon,lion", *small, "--threads", "1",
                   "--no-vectorize")
    assert compared.exit_code == 0, compared.stdout
    doc = compared.json()
    assert set(doc["ranking"]) == {"adamw", "muon", "lion"}
    # (one thread each, as a worker: Muon's matrix products then agree)
    process = cli("compare-optimizers", "--optims", "adamw,muon,lion", *small, "--threads", "1", "--executor",
                  "process", "--jobs", "2", "--no-vectorize")
    assert {k: v["final_loss"] for k, v in process.json()["optimizers"].items()} == {
        k: v["final_loss"] for k, v in doc["optimizers"].items()}
    swept = cli("lr-sweep", "--lrs", "0.001,0.01", *small)
    assert swept.exit_code == 0 and swept.json()["suggested_lr"] in (0.001, 0.01)
    tested = cli("lr-sweep", "--range-test", "--task", "lm", "--data", text, "--steps", "20", "--block-size", "16",
                 "--batch-size", "4", "--layers", "1", "--json")
    assert tested.exit_code == 0 and tested.json()["suggested_lr"] > 0
    losses = cli("compare-losses", *small)
    assert losses.exit_code == 0 and losses.json()["rank_by"] == "nll"
    line = cli("landscape", "--line", "--grid", "5", *small[:-3], "--json")  # (no --seeds)
    assert line.exit_code == 0, line.stdout
    plane = cli("landscape", "--plane", "--grid", "3", *small[:-3], "--json")
    assert plane.exit_code == 0 and plane.json()["paths"][0]["sharpness"]["value"] > 0, plane.stdout
    sharp = losslab.lm(data=text, track_sharpness=1, sharpness_samples=8, **TINY, progress=False)
    assert all(r["sharpness"] > 0 for r in sharp.history)


SEQUENCES = """
import torch
from torch import nn

class BagOfEmbeddings(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(dim=1))

class Items(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 20, (400, 12), generator=g)
        self.labels = (self.ids < 10).sum(dim=1).gt(6).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}

class Renamed(Items):
    def __getitem__(self, i):
        return {"text_ids": self.ids[i], "sentiment": self.labels[i]}
"""


def test_a_sequence_classifier_with_an_embedding_trains_under_classify_on_dict_items(cli, tmp_path, monkeypatch):
    """Integer inputs stay integers (an nn.Embedding reads them); dict items are read by key; the built-in mlp,
    which would read token ids as numbers, is refused."""
    (tmp_path / "seqcls.py").write_text(textwrap.dedent(SEQUENCES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = cli("classify", "--dataset", "seqcls:Items", "--model", "seqcls:BagOfEmbeddings", "--epochs", "30",
              "--device", "cpu", "--json")
    assert run.exit_code == 0, run.stdout
    assert run.json()["accuracy"] > 0.9
    cli("classify", "--dataset", "seqcls:Items", "--epochs", "2").assert_usage_error("--model")
    keyed = cli("classify", "--dataset", "seqcls:Renamed", "--model", "seqcls:BagOfEmbeddings", "--epochs", "30",
                "--device", "cpu", "--input-key", "text_ids", "--target-key", "sentiment", "--json")
    assert keyed.exit_code == 0 and keyed.json()["accuracy"] == run.json()["accuracy"]
    unnamed = cli("classify", "--dataset", "seqcls:Renamed", "--model", "seqcls:BagOfEmbeddings", "--epochs", "2")
    unnamed.assert_usage_error("--dataset")
    assert "--input-key" in unnamed.stderr
    cli("classify", "--dataset", "seqcls:Renamed", "--model", "seqcls:BagOfEmbeddings", "--input-key", "ids",
        "--target-key", "sentiment").assert_usage_error("--input-key")
    cli("classify", "--input-key", "ids").assert_usage_error("--input-key")  # (digits has no dict items)


def test_a_saved_model_continues_a_prompt(cli, tmp_path):
    from losslab.engine.sequences import generate

    text = text_file(tmp_path, markov_text(4000))
    saved = str(tmp_path / "lm.pt")
    result = losslab.lm(data=text, save=saved, **TINY, progress=False)
    run = cli("generate", "--checkpoint", saved, "--prompt", "abc", "--tokens", "25", "--temperature", "0", "--json")
    assert run.exit_code == 0, run.stderr
    continued = run.json()["text"]
    vocab = sorted(set(markov_text(4000)[:3600]))
    ids = torch.tensor([vocab.index(c) for c in "abc"])
    greedy = generate(result.model, ids, 25, 16, temperature=0)
    assert continued == "abc" + "".join(vocab[i] for i in greedy.tolist())
    sampled = [cli("predict", "--checkpoint", saved, "--prompt", "ab", "--json").json() for _ in range(2)]
    assert sampled[0]["predictions"] == sampled[1]["predictions"] and len(sampled[0]["predictions"][0]) == 202
    cli("predict", "--checkpoint", saved, "--prompt", "abz").assert_usage_error("--prompt")
    assert cli("generate", "--checkpoint", saved, "--prompt", "ab", "--tokens", "5").stdout.startswith("ab")
    cli("generate", "--checkpoint", saved, "--prompt", "ab", "--temperature", "-1").assert_usage_error("--temperature")
    cli("generate", "--checkpoint", saved, "--prompt", "ab", "--top-k", "99").assert_usage_error("--top-k")
    cli("predict", "--checkpoint", saved, "--data", text).assert_usage_error("--data")


def test_tensorboard_gets_the_curves_and_the_generated_sample(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = losslab.lm(data=text_file(tmp_path, markov_text(4000)), tensorboard=str(tmp_path / "tb"),
                        **{**TINY, "sample": 30}, progress=False)
    runs = list((tmp_path / "tb" / "lm").iterdir())
    assert len(runs) == 1
    events = EventAccumulator(str(runs[0]), size_guidance={"tensors": 0}).Reload()
    assert [e.value for e in events.Scalars("loss/valid")] == [r["valid_loss"] for r in result.history]
    text = events.Tensors("sample/text_summary")[0].tensor_proto.string_val[0].decode()
    assert result.document()["sample"].splitlines()[-1].strip() in text and text.startswith("    ")


@pytest.mark.slow
def test_replay_and_gate_read_an_lm_result(cli, tmp_path):
    args = ["lm", "--data", text_file(tmp_path, markov_text(4000)), "--epochs", "2", "--eval-every", "5",
            "--eval-batches", "2", "--block-size", "16", "--batch-size", "4", "--layers", "1", "--embed", "32",
            "--heads", "2", "--sample", "20", "--threads", "1", "--json"]
    first = cli(*args)
    (tmp_path / "lm.json").write_text(first.stdout)
    replayed = cli("replay", str(tmp_path / "lm.json"))
    assert replayed.exit_code == 0 and "replay: identical" in replayed.stdout
    gated = cli("gate", str(tmp_path / "lm.json"), "--seeds", "2", "--json")
    assert gated.exit_code == 0, gated.stdout
    assert {m["metric"] for m in gated.json()["metrics"]} >= {"final_loss", "accuracy"}


def test_clipping_is_a_finding_only_when_the_loss_does_not_fall(tmp_path):
    """The recipe clips most steps at 1.0 while the loss falls: not a finding; clipping at 1e9 on most steps while
    the loss rises is exploding gradients."""
    text = text_file(tmp_path, markov_text(4000))
    healthy = losslab.lm(data=text, clip_grad_norm=1.0, **TINY, progress=False)
    assert healthy.history["clipped"][0] > 0.5 and "exploding-gradients" not in healthy.metrics["diagnosis"]
    blown = losslab.lm(data=text, optim="sgd", lr=1e4, clip_grad_norm=1e9, **{**TINY, "epochs": 3}, progress=False)
    assert "exploding-gradients" in blown.metrics["diagnosis"]


def test_expectations_name_the_language_model_figures(cli, tmp_path):
    args = ["lm", "--data", text_file(tmp_path, markov_text(4000)), "--epochs", "2", "--eval-every", "5",
            "--eval-batches", "2", "--block-size", "16", "--batch-size", "4", "--layers", "1", "--embed", "32",
            "--heads", "2", "--sample", "0", "--quiet"]
    assert cli(*args, "--expect", "nll<=3", "--expect", "bits_per_char<=4.5").exit_code == 0
    assert cli(*args, "--expect", "perplexity<=1.1").exit_code == 1
    cli(*args, "--expect", "perplexty<=3").assert_usage_error("--expect")


STOPS = """
from torch import nn

calls = {"n": 0}

class Stops(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 13:
                raise KeyboardInterrupt
        return self.table(idx)
"""


def test_ctrl_c_keeps_the_epochs_so_far_the_report_and_a_sample(tmp_path, monkeypatch):
    (tmp_path / "stops.py").write_text(textwrap.dedent(STOPS))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = losslab.lm(data=text_file(tmp_path, markov_text(4000)), model="stops:Stops",
                        **{**TINY, "epochs": 5, "sample": 10}, progress=False)
    assert result.status == "interrupted" and len(result.history) == 2  # (13th training call: epoch 3)
    assert "interrupted after 2 epochs" in result.report() and len(result.document()["sample"]) == 10


def test_a_run_stopped_mid_epoch_resumes_as_if_it_had_never_stopped(tmp_path, monkeypatch):
    """--save keeps the last whole epoch's state when Ctrl-C stops a run; --resume goes on from it (weights,
    AdamW's moments, the warm-up and cosine schedule, the window draws): the same weights as one uninterrupted run."""
    from losslab import interrupt

    args = dict(data=text_file(tmp_path, markov_text(4000)), **{**TINY, "epochs": 4}, schedule="cosine", warmup=1,
                clip_grad_norm=1.0, progress=False)
    whole = losslab.lm(**args)
    saved = str(tmp_path / "run.pt")
    calls = {"n": 0}
    real = interrupt.check

    def stop_at_the_13th_step() -> None:
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        real()

    monkeypatch.setattr(interrupt, "check", stop_at_the_13th_step)
    stopped = losslab.lm(**args, save=saved)
    assert stopped.status == "interrupted" and len(stopped.history) == 2
    monkeypatch.setattr(interrupt, "check", real)
    going_on = losslab.lm(**args, resume=saved)
    assert going_on.status == "ok" and len(going_on.history) == 4
    assert going_on.history["train_loss"] == whole.history["train_loss"]
    for (name, a), (_, b) in zip(going_on.model.state_dict().items(), whole.model.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(losslab.ConfigError, match="--model: differs from the --resume checkpoint's: model sizes"):
        losslab.lm(**{**args, "embed": 16}, resume=saved)
    with pytest.raises(losslab.ConfigError, match="--block-size: differs"):
        losslab.lm(**{**args, "block_size": 8}, resume=saved)
    other = text_file(tmp_path, "xyz " * 400, "other.txt")  # another vocabulary
    with pytest.raises(losslab.ConfigError, match="--data: differs from the --resume checkpoint's: vocabulary"):
        losslab.lm(**{**args, "data": other}, resume=saved)
    with pytest.raises(losslab.ConfigError, match="--resume: the checkpoint is at epoch 2"):
        losslab.lm(**{**args, "epochs": 2}, resume=saved)


def test_z_loss_adds_the_squared_log_normaliser(tmp_path):
    from losslab.config.lm import LMLossConfig

    cfg = lm_config(tmp_path)
    plain = LMProblem(cfg)
    z = LMProblem(replace_loss(cfg, LMLossConfig(z_loss=1e-2)))
    model = plain.new_model(0)
    x, y = plain.source.head(4)
    with torch.no_grad():
        logits = model(x)
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) + \
            1e-2 * (torch.logsumexp(logits, dim=-1) ** 2).mean()
        assert float(z.loss_fn(logits, y)) == pytest.approx(float(expected), rel=1e-6)
        assert float(plain.loss_fn(logits, y)) < float(z.loss_fn(logits, y))


def replace_loss(cfg, loss):
    from dataclasses import replace

    return replace(cfg, loss=loss)


def test_nll_on_log_probabilities_gives_cross_entropys_numbers(tmp_path):
    text = text_file(tmp_path, markov_text(4000))
    ce = losslab.lm(data=text, **TINY, progress=False)
    nll = losslab.lm(data=text, loss="nll", **TINY, progress=False)
    assert nll.history["train_loss"] == pytest.approx(ce.history["train_loss"], rel=1e-5)
    assert nll.metrics["nll"] == pytest.approx(ce.metrics["nll"], rel=1e-5)


def test_stacked_lm_trials_equal_one_by_one_and_stack_only_where_timed_faster(cli, tmp_path, monkeypatch):
    """Each run's generator draws its own windows in the stack as it would alone; the runs stack through
    torch.func only where a timed probe finds it faster (here forced each way)."""
    from losslab.engine import stacked

    text = text_file(tmp_path, markov_text(4000))
    args = ["lr-sweep", "--task", "lm", "--data", text, "--lrs", "0.001,0.003", "--seeds", "2", "--epochs", "2",
            "--eval-every", "5", "--eval-batches", "2", "--block-size", "16", "--batch-size", "4", "--layers", "1",
            "--embed", "32", "--heads", "2", "--json"]
    monkeypatch.setattr(stacked, "slower_stacked", lambda *a, **k: None)
    together = cli(*args).json()
    alone = cli(*args, "--no-vectorize").json()
    assert together["vectorized"] and not alone["vectorized"]
    for a, b in zip(together["results"], alone["results"]):
        assert a["lr"] == b["lr"] and a["seed"] == b["seed"]
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-6)
        assert a["best_loss"] == pytest.approx(b["best_loss"], rel=1e-6)  # (the epochs' validation losses)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-4)
    monkeypatch.setattr(stacked, "slower_stacked", lambda *a, **k: "stacking measured 0.5x the speed")
    slower = cli(*args[:-1], "--quiet")
    assert "not stacked: stacking measured 0.5x the speed" in slower.stdout
