"""What a user sees when model and kernel disagree: a deliberately wrong "kernel" (the
model, off by one in getpid) stands in for the real backend, through ``pidns check``."""

from __future__ import annotations

import json
import pathlib

import pytest

from pidns.cli import main
from pidns.scenario import real
from pidns.scenario.ast import Op, Outcome, Step
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse_file


class OffByOne(ModelBackend):
    """A backend that answers every getpid one too high: a kernel the model disagrees with."""

    name = "real"

    def step(self, step: Step) -> Outcome:
        outcome = super().step(step)
        if step.op is Op.GETPID and outcome.result.isdigit():
            outcome.result = str(int(outcome.result) + 1)
        return outcome


@pytest.fixture
def wrong_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(real, "RealBackend", OffByOne)


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "t.pidns"
    path.write_text(text)
    return str(path)


SCENARIO = "A: fork -> B\nB: getpid => 3\nB: exit 0\nA: wait B => B exited 0\n"


def test_the_text_report_names_the_step_and_both_results(
    wrong_kernel: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, SCENARIO)
    assert main(["check", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"FAIL  {path} (4 steps on model and real)"
    assert "  expectation not met: line 2: B: getpid => 3: real gave 4, expected 3" in out
    assert "  1 step(s) where model and real differ:" in out
    at = out.index("  step 2, line 2: B: getpid => 3")
    assert out[at + 1].split() == ["result", "model:", "3"]
    assert out[at + 2].split() == ["real:", "4"]
    assert out[-1] == "0 of 1 scenario(s) passed, 1 failed"


def test_the_json_report_marks_the_diverging_step(
    wrong_kernel: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--json", write(tmp_path, SCENARIO)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["failed"] == 1
    (scenario,) = doc["scenarios"]
    assert scenario["ok"] is False
    assert [s["diverges"] for s in scenario["steps"]] == [False, True, False, False]
    step = scenario["steps"][1]
    assert (step["model"]["result"], step["real"]["result"]) == ("3", "4")
    assert step["model"]["meets_expectation"] and not step["real"]["meets_expectation"]


def test_check_random_shrinks_each_divergence_and_saves_a_reproducer(
    wrong_kernel: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "found"
    status = main(["check", "--json", "--random", "6", "--seed", "11", "--save", str(save)])
    doc = json.loads(capsys.readouterr().out)
    saved = doc["summary"]["reproducers"]
    assert status == 1 and saved, "some of the random scenarios make a getpid"
    assert sorted(saved) == sorted(str(p) for p in save.iterdir())
    for path in saved:
        text = pathlib.Path(path).read_text()
        header = text.splitlines()[:2]
        assert header[0].startswith("# found by: pidns check --random ")
        assert f"rerun: pidns check {path}" in header[1]
        steps = parse_file(path).steps
        # shrunk to a 1-minimal reproducer: a getpid, and only what it needs
        assert any(step.op is Op.GETPID for step in steps)
        assert len(steps) <= 3, text
        assert main(["check", path]) == 1  # it still fails on the wrong kernel
    capsys.readouterr()
    failed = [s for s in doc["scenarios"] if not s["ok"]]
    assert len(failed) == len(saved)
    assert sorted(s["path"] for s in failed) == sorted(saved)  # reported as the shrunk file


class WrongOnce(OffByOne):
    """A kernel that answers one getpid wrong, once: a divergence that timing made and
    a rerun does not repeat."""

    spent = False

    def step(self, step: Step) -> Outcome:
        if WrongOnce.spent or step.op is not Op.GETPID:
            return ModelBackend.step(self, step)
        WrongOnce.spent = True
        return super().step(step)


def test_check_random_reports_a_divergence_its_reproducer_does_not_repeat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(real, "RealBackend", WrongOnce)
    monkeypatch.setattr(WrongOnce, "spent", False)
    save = tmp_path / "found"
    status = main(["check", "--json", "--random", "6", "--seed", "11", "--save", str(save)])
    doc = json.loads(capsys.readouterr().out)
    (saved,) = doc["summary"]["reproducers"]
    assert status == 1 and doc["summary"]["failed"] == 1
    (failed,) = [s for s in doc["scenarios"] if not s["ok"]]
    # the first run's verdict, under the scenario's own name: the saved file passes now
    assert failed["path"] == pathlib.Path(saved).name
    assert any(s["diverges"] for s in failed["steps"])
    assert main(["check", saved]) == 0
