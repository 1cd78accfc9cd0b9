"""Launching llamafactory-cli: one helper for training, export and the demo's held-out loss run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

from vslm.core.errors import RecipeError
from vslm.core.paths import rel
from vslm.pipeline import heldout_loss
from vslm.recipes.matrix import get_recipe


@pytest.mark.slow  # starts llamafactory-cli (20-60 s on 2 busy cores)
def test_a_failed_llamafactory_run_is_one_line_naming_its_log_which_keeps_the_output(tmp_path, capsys):
    out_dir = tmp_path / "loss-base"
    with pytest.raises(RecipeError) as failed:
        heldout_loss(get_recipe("telecom_r32"), "tiny", "models/no-such-model", out_dir)
    log = out_dir / "eval.log"
    assert str(failed.value) == (f"llamafactory-cli train recipes/telecom_r32.yaml failed with exit code 1 "
                                 f"(see {rel(log)})")
    # llamafactory-cli's own output is kept: its traceback, ending in the exception it raised (the wording of that
    # exception depends on how transformers looks the missing model up, so only its shape is asserted)
    kept = log.read_text(encoding="utf-8").strip().splitlines()
    assert "Traceback (most recent call last):" in kept and "Error" in kept[-1].split(":")[0], kept[-3:]
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("$ llamafactory-cli train recipes/telecom_r32.yaml ") and "do_eval=true" in shown[0].lower()


def test_merge_of_an_untrained_full_fine_tune_names_the_folder_as_typed_from_the_repository():
    saves = "saves/.no-such-run"  # under the repository; nothing creates it
    assert not (ROOT / saves).exists()
    result = subprocess.run([sys.executable, "-m", "vslm", "merge", "telecom_r32", "--profile", "tiny_full"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "VSLM_SAVES": saves})
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: {saves}/tiny_full/telecom_r32/full: no fine-tuned model — run `vslm train telecom_r32 --profile tiny_full` first"]
