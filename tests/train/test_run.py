"""Launching llamafactory-cli: one helper for training, export and the demo's held-out loss run."""

from __future__ import annotations

import pytest

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
    assert "models/no-such-model" in log.read_text(encoding="utf-8"), "llamafactory-cli's own output is in the log"
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("$ llamafactory-cli train recipes/telecom_r32.yaml ") and "do_eval=true" in shown[0].lower()
