"""What went wrong in a run, in words: rules over its epoch records, each finding with its evidence and a
suggestion. Pure Python over the records every engine writes; no torch.

Each rule is one function `(records, context) -> Finding | None`, registered in RULES in the order the
report lists them. A healthy run gets no finding at all.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from operator import and_, ge, itemgetter, mul
from typing import Any, Callable, Mapping, Optional, Sequence

from losslab.objects import shown

Record = Mapping[str, Any]

# thresholds, named so the docs and the tests can quote them
WINDOW = 20  # the last epochs the trend rules (oscillating, plateau) look at
MIN_EPOCHS = 8  # fewer epochs than this: too short to speak of a trend
OSCILLATION_SIGN_CHANGES = 0.5  # more than half of the window's successive differences change sign...
OSCILLATION_ABOVE = 0.1  # ...by more than 10% of the loss left above the optimum (which must be > 10% of it);
OSCILLATION_AMPLITUDE = 0.01
# without a known optimum, by more than 10% of the loss and 1% of what the run has learned (first - best loss)
PLATEAU_IMPROVEMENT = 1e-3  # the window improved the best loss by less than 0.1%...
PLATEAU_SPREAD = 0.01  # ...stayed within 1% of its mean...
PLATEAU_FAR = 0.1  # ...while 10% above the least-squares optimum's loss (classification: learned < 10% of the first
# loss)
VANISHING_RATIO = 1e-4  # the first layer's gradient norm below 1e-4 of the last layer's...
VANISHING_SHARE = 0.5  # ...on more than half of the epochs
EXPLODING_GROWTH = 10.0  # the gradient norm growing >= 10x per epoch, two epochs in a row
CLIPPING_SHARE = 0.5  # or clipping active on more than half of all steps (not for a language model whose loss
# falls: its recipe clips most steps at norm 1.0 while gradient norms are 1-3 — the recipe working)
OVERFITTING_EPOCHS = 5  # validation loss rising for this many epochs after its best while training loss falls
OVERFITTING_RISE = 0.02  # and ending at least 2% above its best
SLOW_DISTANCE = 0.01  # regression: parameters still more than 1% (relative) from the least-squares optimum
CONDITION = 1e4  # regression: a Hessian condition number above this makes every single rate slow on some direction


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestion: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "evidence": self.evidence,
                "suggestion": self.suggestion}

    def line(self) -> str:
        return f"{self.code}: {self.message}" + (f" — {self.suggestion}" if self.suggestion else "")


@dataclass(frozen=True)
class Context:
    """What the rules know besides the records."""

    status: str = "ok"
    diverged_epoch: Optional[int] = None
    task: str = "regression"
    lr: Optional[float] = None
    stable_lr: Optional[float] = None  # the largest rate of a grid that did not diverge
    optimum_loss: Optional[float] = None  # regression with MSE: the least-squares optimum's loss
    optimum_params: Optional[Mapping[str, float]] = None
    params: Optional[Mapping[str, float]] = None
    patience: Optional[int] = None  # --patience already stops and restores the best weights
    clip_option: Optional[str] = None  # "--clip-grad-norm 1" when clipping was on
    ill_conditioned: Optional[float] = None  # regression on raw columns: the condition number, when over CONDITION
    user_model: Optional[str] = None  # a user's own model (--model package.module:NAME): its code sets its layers
    optim: Optional[str] = None  # the run's optimizer (advice does not suggest the one already in use)


Rule = Callable[[Sequence[Record], Context], Optional[Finding]]
RULES: dict[str, Rule] = {}


def rule(code: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[code] = fn
        return fn
    return register


CODES = ("diverged", "edge-of-stability", "oscillating", "plateau", "vanishing-gradients", "exploding-gradients",
         "overfitting", "slow-convergence")


class Records(list):
    """A run's records with what several rules read computed once (the finite training losses)."""

    @property
    def losses(self) -> list[float]:
        if not hasattr(self, "_losses"):
            self._losses = list(filter(math.isfinite, map(itemgetter("train_loss"), self)))
        return self._losses


def diagnose(records: Sequence[Record], context: Context) -> list[Finding]:
    """Every rule's finding for one run, in the order of CODES; slow-convergence only when the loss is neither
    growing, swinging nor stuck (those findings say it better)."""
    if context.status in ("interrupted", "error"):
        return []  # a partial run: its trend says nothing
    view = Records(records)
    found: list[Finding] = []
    for code in CODES:
        if code == "slow-convergence" and any(f.code in ("diverged", "oscillating", "plateau") for f in found):
            continue
        finding = RULES[code](view, context)
        if finding is not None:
            found.append(finding)
    return found


def _losses(records: Sequence[Record]) -> list[float]:
    if isinstance(records, Records):
        return records.losses
    return Records(records).losses


def _g(x: float) -> str:
    return f"{x:.3g}"


@rule("diverged")
def _diverged(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    if ctx.status == "ok":
        return _diverging(records, ctx)
    if ctx.status != "diverged":
        return None
    finite = [r for r in records if math.isfinite(r.get("train_loss", math.nan))]
    before = finite[-1] if finite else {}
    epoch = ctx.diverged_epoch or (records[-1]["epoch"] if records else None)
    lr = before.get("lr", ctx.lr)
    evidence = {"epoch": epoch, "lr": lr, "grad_norm": before.get("grad_norm"),
                "last_finite_epoch": before.get("epoch")}
    last = (f" after epoch {before['epoch']} (lr {_g(lr)}, gradient norm {_g(before['grad_norm'])})"
            if before and lr is not None else "")
    return Finding("diverged", f"the loss became NaN or infinite at epoch {epoch}{last}", evidence,
                   _lower_rate(ctx, lr, records))


def growth(records: Sequence[Record]) -> Optional[float]:
    """How fast the gradient norm grew per epoch over the last finite epochs (the median of up to three
    successive ratios), or None when it did not grow."""
    norms = [r["grad_norm"] for r in records if math.isfinite(r.get("grad_norm", math.nan)) and r["grad_norm"] > 0]
    last = norms[-4:]
    ratios = [b / a for a, b in zip(last, last[1:])]
    if not ratios or statistics.median(ratios) <= 1:
        return None
    return statistics.median(ratios)


def safer_rate(lr: float, records: Sequence[Record]) -> float:
    """A rate that stops the growth: on a quadratic, full-batch gradient descent multiplies the error along the
    sharpest direction by |1 − lr·λ| per step, so a growth r per epoch means lr·λ ≈ 1 + r and rates below
    2·lr / (1 + r) are stable; half of that, at most a tenth of lr, rounded down to one significant digit."""
    r = growth(records)
    return _round_down(min(lr / 10, lr / (1 + r)) if r is not None else lr / 10)


def _lower_rate(ctx: Context, lr: Optional[float], records: Sequence[Record] = ()) -> str:
    """`lr` is the rate the run failed at; the suggestion scales --lr (ctx.lr) by the same factor, so a schedule
    that had raised the rate (warm-up, one-cycle) is accounted for."""
    if ctx.stable_lr is not None:
        return f"the largest rate of this grid that did not diverge is {_g(ctx.stable_lr)}"
    if lr:
        safe = safer_rate(lr, records)
        if ctx.lr and ctx.lr != lr:
            safe = _round_down(ctx.lr * safe / lr)
        return f"lower the learning rate (try --lr {_g(safe)}) or clip gradients (--clip-grad-norm)"
    return "lower the learning rate or clip gradients (--clip-grad-norm)"


def _round_down(x: float) -> float:
    scale = 10 ** math.floor(math.log10(x))
    return math.floor(x / scale + 1e-9) * scale


def _diverging(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    """A run that ended before its loss overflowed, but with the loss growing epoch after epoch above where
    it started."""
    losses = _losses(records)
    if len(losses) < MIN_EPOCHS or len(losses) != len(records):
        return None
    window = losses[-min(WINDOW, len(losses)):]
    rises = sum(b > a for a, b in zip(window, window[1:]))
    if rises < 0.8 * (len(window) - 1) or window[-1] <= 2 * window[0] or window[-1] <= losses[0]:
        return None
    a, b = records[-len(window)]["epoch"], records[-1]["epoch"]
    evidence = {"epochs": [a, b], "losses": [window[0], window[-1]], "first_loss": losses[0],
                "lr": records[-1].get("lr")}
    return Finding("diverged", f"the loss is growing: from {_g(window[0])} at epoch {a} to {_g(window[-1])} at epoch "
                   f"{b}, above the {_g(losses[0])} it started at; more epochs would overflow it", evidence,
                   _lower_rate(ctx, records[-1].get("lr", ctx.lr), records))


EDGE = 1.8  # sharpness × lr from here on is "≈ 2": gradient descent at the edge of stability


@rule("edge-of-stability")
def _edge(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    """With --track-sharpness: did sharpness × lr reach 2 (gradient descent's stability limit on a quadratic)? Before
    a divergence it says whether the rate was past 2/λmax; in a run that still trains, that the loss falls
    non-monotonically at the edge of stability (Cohen et al. 2021)."""
    points = [(r["epoch"], r["sharpness"], r["sharpness"] * r["lr"]) for r in records
              if isinstance(r.get("sharpness"), (int, float)) and math.isfinite(r["sharpness"]) and r.get("lr")]
    if not points:
        return None
    epoch, sharp, top = max(points, key=lambda p: p[2])
    evidence = {"epoch": epoch, "sharpness": sharp, "sharpness_x_lr": top}
    if ctx.status == "diverged":
        past = [(e, v) for e, _, v in points if v > 2]
        if past:
            return Finding("edge-of-stability", f"sharpness × lr passed 2 at epoch {past[0][0]} ({past[0][1]:.3g}) "
                           f"before the run diverged at epoch {ctx.diverged_epoch}: the rate was above 2/λmax, where "
                           "gradient descent cannot be stable", evidence,
                           f"keep the rate below 2/λmax ≈ {2 / sharp:.3g}")
        return Finding("edge-of-stability", f"sharpness × lr stayed below 2 (at most {top:.3g}, epoch {epoch}) until "
                       f"the run diverged at epoch {ctx.diverged_epoch}: the curvature where it was measured does not "
                       "explain the divergence (it grew between measurements, or away from the measured rows)",
                       evidence)
    if top < EDGE:
        return None
    first = next(e for e, _, v in points if v >= EDGE)  # from where it came near 2
    after = [r["train_loss"] for r in records if r["epoch"] >= first and math.isfinite(r["train_loss"])]
    rises = sum(b > a for a, b in zip(after, after[1:]))
    if not rises or after[-1] >= after[0]:
        return None
    return Finding("edge-of-stability", f"sharpness × lr reached {top:.3g} at epoch {epoch} (≈ 2 from epoch {first}) "
                   f"while the loss still fell, non-monotonically ({rises} rise(s) since): training runs at the edge "
                   "of stability (Cohen et al. 2021), the sharpness held near 2/lr", evidence,
                   "not a failure; a smaller rate trains smoothly, a larger one diverges")


@rule("oscillating")
def _oscillating(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    losses = _losses(records)
    if ctx.status != "ok" or len(losses) < MIN_EPOCHS:
        return None
    window = losses[-min(WINDOW, len(losses)):]
    diffs = [b - a for a, b in zip(window, window[1:])]
    changes = sum((a > 0) != (b > 0) for a, b in zip(diffs, diffs[1:]) if a != 0 and b != 0)
    share = changes / max(1, len(diffs) - 1)
    amplitude = statistics.median(abs(d) for d in diffs)
    level = statistics.median(window)
    if ctx.optimum_loss is not None:  # the swings must be large against what is left to learn
        above = level - ctx.optimum_loss
        large = above > OSCILLATION_ABOVE * ctx.optimum_loss + 1e-12 and amplitude > 0.1 * above
    else:  # and against what the run has learned, so that mini-batch noise near zero loss is not a finding
        learned = losses[0] - min(losses)
        large = amplitude > OSCILLATION_AMPLITUDE * learned and amplitude > 0.1 * level
    if share <= OSCILLATION_SIGN_CHANGES or not large:
        return None
    a, b = records[-len(window)]["epoch"], records[-1]["epoch"]
    evidence = {"epochs": [a, b], "sign_changes": round(share, 3), "median_step": amplitude, "median_loss": level}
    lr = records[-1].get("lr", ctx.lr)
    return Finding("oscillating", f"the training loss went up and down on {share:.0%} of epochs {a}-{b}, by "
                   f"{_g(amplitude)} per epoch (median) around {_g(level)}", evidence,
                   f"the learning rate is too large: try --lr {_g(lr / 3)}" if lr else "lower the learning rate")


@rule("plateau")
def _plateau(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    losses = _losses(records)
    if ctx.status != "ok" or len(losses) < MIN_EPOCHS:
        return None
    n = min(WINDOW, len(losses) // 2)
    window = losses[-n:]
    best_before, best_in = min(losses[:-n]), min(window)
    flat = max(window) - min(window) <= PLATEAU_SPREAD * abs(statistics.fmean(window))
    if not flat or best_before - best_in > PLATEAU_IMPROVEMENT * abs(best_before):
        return None  # still moving
    final = losses[-1]
    if ctx.optimum_loss is not None:
        far = final > (1 + PLATEAU_FAR) * ctx.optimum_loss + 1e-12
        where = f"{_g(final)} against the least-squares optimum's {_g(ctx.optimum_loss)}"
    else:
        far = final > (1 - PLATEAU_FAR) * losses[0]
        where = f"{_g(final)}, against {_g(losses[0])} after the first epoch"
    if not far:
        return None
    evidence = {"epochs": n, "best_before": best_before, "best_in_window": best_in, "final_loss": final,
                "optimum_loss": ctx.optimum_loss, "first_loss": losses[0]}
    return Finding("plateau", f"the loss has not improved over the last {n} epochs while far from the optimum: "
                   f"it is {where}", evidence, _conditioning(ctx) or "raise the learning rate, "
                   + ("" if ctx.optim in ("adam", "adamw") else "change optimizer (adam), ")
                   + "or check the model and data (see vanishing-gradients)")


def _conditioning(ctx: Context) -> str:
    if ctx.ill_conditioned is None:
        return ""
    return (f"standardise the columns (--standardize): their scales differ so much (condition number "
            f"{ctx.ill_conditioned:.2g}) that a rate stable on the largest makes no progress on the smallest")


def _weights(record: Record) -> list[str]:
    """Per-layer gradient keys of the weight tensors, first to last (biases left out)."""
    return [k for k in record if k.startswith("grad_norm/") and not k.endswith("bias")]


@rule("vanishing-gradients")
def _vanishing(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    keys = _weights(records[0]) if records else []
    if len(keys) < 2:
        return None
    first, last = keys[0], keys[-1]
    ratios = [r[first] / r[last] if r.get(last) else math.inf for r in records if first in r and last in r]
    below = sum(ratio < VANISHING_RATIO for ratio in ratios)
    if not ratios or below <= VANISHING_SHARE * len(ratios):
        return None
    median = statistics.median(ratios)
    name = lambda key: key[len("grad_norm/"):]  # noqa: E731
    evidence = {"first_layer": name(first), "last_layer": name(last), "median_ratio": median,
                "epochs_below": below, "epochs": len(ratios), "threshold": VANISHING_RATIO}
    return Finding("vanishing-gradients", f"the first layer's gradient ({name(first)}) was below "
                   f"{VANISHING_RATIO:g} of the last layer's ({name(last)}) on {below} of {len(ratios)} epochs "
                   f"(median ratio {median:.2e})", evidence,
                   f"in {shown(ctx.user_model)}: use ReLU activations with Kaiming initialisation, add normalisation "
                   "layers or residual connections, or use fewer layers" if ctx.user_model else
                   "use --activation relu with --init kaiming, add --batch-norm, or fewer layers (--depth)")


@rule("exploding-gradients")
def _exploding(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    values = list(map(itemgetter("grad_norm"), records))
    kept = None if all(map(math.isfinite, values)) else [i for i, v in enumerate(values) if math.isfinite(v)]
    if kept is not None:
        values = [values[i] for i in kept]
    # grew[j]: epoch j+1's norm >= 10x epoch j's; twice[j]: and epoch j+2's >= 10x epoch j+1's (epoch j's > 0)
    grew = list(map(ge, values[1:], map(mul, values, repeat(EXPLODING_GROWTH))))
    twice = map(and_, grew, grew[1:])
    first = next((j for j in compress(count(), twice) if values[j] > 0), None)
    if first is not None:
        a, b, c = values[first:first + 3]
        e = records[first + 2 if kept is None else kept[first + 2]]["epoch"]
        evidence = {"epoch": e, "grad_norms": [a, b, c], "growth": [b / a, c / b]}
        return Finding("exploding-gradients", f"the gradient norm grew from {_g(a)} to {_g(c)} in two epochs "
                       f"(to epoch {e}), at least {EXPLODING_GROWTH:g}x per epoch", evidence,
                       _lower_rate(ctx, records[-1].get("lr", ctx.lr), records[:first + 3]))
    clipped = [r["clipped"] for r in records if "clipped" in r] if records and "clipped" in records[0] else []
    losses = getattr(records, "losses", [])
    recipe = ctx.task == "language-model" and len(losses) > 1 and losses[-1] < losses[0]  # clipped, and learning
    if clipped and statistics.fmean(clipped) > CLIPPING_SHARE and not recipe:
        share = statistics.fmean(clipped)
        evidence = {"clipped_share": share, "option": ctx.clip_option}
        return Finding("exploding-gradients", f"gradient clipping ({ctx.clip_option}) was active on {share:.0%} of "
                       "the steps: the raw gradients are persistently larger than the limit", evidence,
                       "lower the learning rate, or raise the clipping limit if it was set too low")
    return None


@rule("overfitting")
def _overfitting(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    if not records or "valid_loss" not in records[0]:  # no validation (or diverged at once)
        return None
    valid = [(i, r["valid_loss"]) for i, r in enumerate(records) if math.isfinite(r.get("valid_loss", math.nan))]
    if ctx.patience is not None or len(valid) < MIN_EPOCHS:
        return None
    best_i, best = min(valid, key=lambda iv: iv[1])
    last_i, last = valid[-1]
    after = last_i - best_i
    train_then, train_now = records[best_i]["train_loss"], records[last_i]["train_loss"]
    if after < OVERFITTING_EPOCHS or last < best * (1 + OVERFITTING_RISE) or not train_now < train_then:
        return None
    best_epoch, last_epoch = records[best_i]["epoch"], records[last_i]["epoch"]
    evidence = {"best_epoch": best_epoch, "best_valid_loss": best, "final_valid_loss": last,
                "train_loss_at_best": train_then, "final_train_loss": train_now}
    return Finding("overfitting", f"the validation loss rose from {_g(best)} (epoch {best_epoch}) to {_g(last)} "
                   f"(epoch {last_epoch}) while the training loss fell from {_g(train_then)} to {_g(train_now)}",
                   evidence, f"stop at the best epoch with --patience {OVERFITTING_EPOCHS} (restores its weights), "
                   "or regularise (--weight-decay, --dropout, more data)")


@rule("slow-convergence")
def _slow(records: Sequence[Record], ctx: Context) -> Optional[Finding]:
    if ctx.status != "ok" or ctx.optimum_params is None or not ctx.params:
        return None
    names = list(ctx.optimum_params)
    if any(n not in ctx.params or not math.isfinite(ctx.params[n]) for n in names):
        return None
    gap = math.dist([ctx.params[n] for n in names], [ctx.optimum_params[n] for n in names])
    scale = max(math.hypot(*ctx.optimum_params.values()), 1e-12)
    if gap <= SLOW_DISTANCE * scale:
        return None
    evidence = {"distance": gap, "relative_distance": gap / scale, "epochs": len(records),
                "final_loss": records[-1]["train_loss"] if records else None, "optimum_loss": ctx.optimum_loss}
    lr = ctx.lr or (records[-1].get("lr") if records else None)  # --lr: a schedule's last rate is not what to scale
    how = _overshooting(records, ctx.optimum_params)
    if how == "crossing":
        evidence["overshooting"] = how
        advice = (f"the parameters jump across the optimum epoch after epoch: the rate is near gradient descent's "
                  f"limit 2/λ; lower it (try --lr {_g(lr / 3)})" if lr else "lower the learning rate")
    elif how == "circling":
        evidence["overshooting"] = how
        advice = (f"the parameters circle the optimum (their distance to it grows again and again) while the "
                  f"optimizer settles: train longer (try --epochs {3 * len(records)}), or let a schedule lower the "
                  "rate as training goes (--schedule cosine)")
    else:
        faster = _speed_up(records, ctx.optimum_params, SLOW_DISTANCE * scale / 2)
        ways = ([f"raise the learning rate (try --lr {_g(_round_up(lr * faster))})" if lr else
                 "raise the learning rate", "train longer (--epochs)"]
                + ([] if ctx.optim in ("adam", "adamw") else ["use adam"]))  # (not the optimizer in use)
        advice = _conditioning(ctx) or ", ".join(ways[:-1]) + " or " + ways[-1]
    return Finding("slow-convergence", f"after {len(records)} epochs the parameters are still {gap / scale:.1%} "
                   "from the least-squares optimum", evidence, advice)


def _speed_up(records: Sequence[Record], optimum: Mapping[str, float], target: float) -> float:
    """How many times the rate would have to be to reach `target` distance from the optimum in the same epochs,
    by the larger of two models of the progress so far: geometric (gradient descent on a quadratic shrinks the
    distance by a constant factor per epoch, 1 − lr·λ) and linear (adaptive optimizers move about lr per step);
    with a 1.5 margin, between 2 and 100."""
    names = list(optimum)
    point = lambda r: [r.get(n, math.nan) for n in names]  # noqa: E731
    target_point = [optimum[n] for n in names]
    first, left = math.dist(point(records[0]), target_point), math.dist(point(records[-1]), target_point)
    steps = len(records) - 1
    if not (math.isfinite(first) and math.isfinite(left)) or steps < 1 or not first > left > target:
        return 3.0
    shrink = (left / first) ** (1 / steps)
    geometric = (1 - (target / first) ** (1 / steps)) / (1 - shrink)
    linear = (first - target) / (first - left)
    return min(100.0, max(2.0, 1.5 * max(geometric, linear)))


def _round_up(x: float) -> float:
    """Up to one significant digit (0.0273 -> 0.03)."""
    scale = 10 ** math.floor(math.log10(x))
    return math.ceil(x / scale - 1e-9) * scale


def _overshooting(records: Sequence[Record], optimum: Mapping[str, float], window: int = 20) -> Optional[str]:
    """Whether the rate is too large rather than too small: "crossing" when over the last `window` epochs the
    parameter farthest from the optimum lands on the other side of it on at least 80% of the epochs (gradient
    descent with a rate above 1/λ), "circling" when the distance to the optimum grows on at least a fifth of them
    (momentum and adaptive optimizers); None otherwise (a rate that is too small only ever gets closer)."""
    tail = records[-window:]
    if len(tail) < 3:
        return None
    names = list(optimum)
    name = max(names, key=lambda n: abs(tail[-1].get(n, 0.0) - optimum[n]))
    sides = [r[name] - optimum[name] for r in tail if name in r]
    flips = sum(a * b < 0 for a, b in zip(sides, sides[1:]))
    target = [optimum[n] for n in names]
    distances = [math.dist([r.get(n, math.nan) for n in names], target) for r in tail]
    rises = sum(b > a for a, b in zip(distances, distances[1:]))
    if flips >= 0.8 * (len(sides) - 1):
        return "crossing"
    return "circling" if rises >= 0.2 * (len(distances) - 1) else None


def codes(findings: Sequence[Finding]) -> list[str]:
    return [f.code for f in findings]
