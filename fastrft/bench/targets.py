"""Targets a result is held to, and by how much it meets or misses each.

Targets are fastrft's speed goals (README, `fastrft bench`), as far as one result can check
them: the top rung's fraction of the limit (the floor a robust step cannot beat, so the gap is
overhead), its speed-up over the PyTorch-defaults baseline, the projected length of a whole run,
and in attack mode the speed-up over AutoAttack's APGD-CE at its robust accuracy, so that speed
never comes from a weaker attack. They come from the preset's ``targets`` section, overridden by
``targets.MODE.KEY=value`` or by --target-* flags. A check is recorded, never enforced: the
exit code does not depend on it.

    train   speedup       top rung images/s over rung 0's
            limit         top rung's fraction of the limit
            minutes       projected wall time of a whole RFT-fix run
    attack  speedup       fast path images/s over AutoAttack APGD-CE's
            fp32_speedup  fastrft fp32 eager images/s over AutoAttack APGD-CE's
            acc_gap       |robust accuracy of the fast path - AutoAttack's|, in points
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TRAIN_KEYS = ("speedup", "limit", "minutes")
ATTACK_KEYS = ("speedup", "fp32_speedup", "acc_gap")
PEER = "AutoAttack APGD-CE"


def target_problem(key: str, value: float) -> str | None:
    """Why ``value`` cannot be the target ``key``; None if it can."""
    if value < 0 or (value == 0 and key != "acc_gap"):
        return f"must be positive, got {value:g}"
    if key == "limit" and value > 1:
        return f"is a fraction of the limit (e.g. 0.85), got {value:g}"
    return None


@dataclass(frozen=True)
class Check:
    what: str
    wanted: str
    got: str | None
    met: bool | None
    """None: the result lacks what the check needs (``got`` then says why)."""
    verdict: str

    def line(self) -> str:
        got = self.got if self.met is not None else "not checked"
        return f"target: {self.what} {self.wanted}: {got}, {self.verdict}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at_least(what: str, wanted: float, got: float | None, unit: str, why: str = "") -> Check:
    """A ratio that should reach ``wanted``; a miss is said as the share it falls short."""
    text = f">= {wanted:g}{unit}"
    if got is None:
        return Check(what, text, None, None, why)
    if got >= wanted:
        return Check(what, text, f"{got:.2f}{unit}", True, "met")
    return Check(what, text, f"{got:.2f}{unit}", False, f"missed by {1 - got / wanted:.0%}")


def _top_ops(profile: list[dict[str, Any]] | None, n: int = 3) -> str:
    if not profile:
        return ""
    ops = ", ".join(f"{p['op']} {p['share']:.0%}" for p in profile[:n])
    return f" (the top rung's time goes to {ops}, ...)"


def train_checks(result: dict[str, Any], targets: dict[str, float]) -> list[Check]:
    rows = [r for r in result["rows"] if r.get("images_per_s")]  # the rungs that were timed
    if not rows:
        return []
    top, base = rows[-1], next((r for r in rows if r["rung"] == 0), None)
    where = _top_ops(result.get("profile"))
    checks = []
    if "speedup" in targets:
        got = top["images_per_s"] / base["images_per_s"] if base and top is not base else None
        c = _at_least(
            f"rung {top['rung']} over the baseline",
            targets["speedup"],
            got,
            "x",
            "needs rung 0 and a higher rung",
        )
        checks.append(_with_profile(c, where))
    if "limit" in targets:
        wanted = targets["limit"]
        got = top.get("fraction_of_limit")
        text = f">= {wanted:.0%}"
        if got is None:
            checks.append(
                Check(
                    f"rung {top['rung']} of the limit",
                    text,
                    None,
                    None,
                    "the limit was not measured",
                )
            )
        else:
            verdict = "met" if got >= wanted else f"missed by {(wanted - got) * 100:.0f} points"
            c = Check(
                f"rung {top['rung']} of the limit", text, f"{got:.0%}", got >= wanted, verdict
            )
            checks.append(_with_profile(c, where))
    if "minutes" in targets:
        wanted, proj = targets["minutes"], result.get("projection")
        text = f"<= {wanted:g} min"
        if not proj:
            checks.append(
                Check(
                    "a whole run (RFT-fix)",
                    text,
                    None,
                    None,
                    "no projection (set images and epochs)",
                )
            )
        else:
            got = proj["fix_s"] / 60
            verdict = "met" if got <= wanted else f"over by {got - wanted:.1f} min"
            checks.append(
                Check("a whole run (RFT-fix)", text, f"{got:.1f} min", got <= wanted, verdict)
            )
    return checks


def _with_profile(c: Check, where: str) -> Check:
    if c.met is False and where:
        return Check(c.what, c.wanted, c.got, c.met, c.verdict + where)
    return c


def attack_checks(result: dict[str, Any], targets: dict[str, float]) -> list[Check]:
    rows = result["rows"]
    peer = next((r for r in rows if r["name"] == PEER), None)
    fast = next((r for r in rows if r["name"].startswith("fastrft fast path")), None)
    eager = next((r for r in rows if r["name"] == "fastrft fp32 eager"), None)
    why = f"no {PEER} row (pip install pyautoattack; apgd only)"
    checks = []
    for key, row, label in (
        ("speedup", fast, "fast path"),
        ("fp32_speedup", eager, "fp32 eager"),
    ):
        if key in targets:
            got = row["images_per_s"] / peer["images_per_s"] if peer and row else None
            checks.append(_at_least(f"{label} over {PEER}", targets[key], got, "x", why))
    if "acc_gap" in targets:
        wanted = targets["acc_gap"]
        text = f"<= {wanted:g} points"
        what = f"robust accuracy of the fast path against {PEER}'s"
        if not (peer and fast):
            checks.append(Check(what, text, None, None, why))
        else:
            gap = abs(fast["robust_acc"] - peer["robust_acc"]) * 100
            verdict = "met" if gap <= wanted else f"over by {gap - wanted:.1f} points"
            checks.append(Check(what, text, f"{gap:.1f} points apart", gap <= wanted, verdict))
    return checks


def checks_for(mode: str, result: dict[str, Any], targets: dict[str, float]) -> list[Check]:
    return (attack_checks if mode == "attack" else train_checks)(result, targets)
