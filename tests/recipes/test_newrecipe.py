"""`vslm new` starts a user's own domain from an existing recipe: matrix entry, rendered files, next steps."""

import os
import shutil
import subprocess
import sys

from conftest import ROOT


def test_new_recipe_is_added_to_the_matrix_and_rendered(tmp_path):
    for folder in ("vslm", "templates", "recipes"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "dataset_info.json", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    vslm = [sys.executable, "-m", "vslm"]
    out = subprocess.run(vslm + ["new", "telecom_r32", "bank_faq", "--domain", "bank"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "register bank_train and bank_eval" in out.stdout
    assert "bank_faq:" in (tmp_path / "templates" / "matrix.yaml").read_text(encoding="utf-8")
    text = (tmp_path / "recipes" / "bank_faq.yaml").read_text(encoding="utf-8")
    assert "dataset: bank_train" in text and "lora_rank: 32" in text and "recipe `bank_faq`" in text
    assert (tmp_path / "recipes" / "families" / "bank.md").is_file()
    check = subprocess.run(vslm + ["check"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    again = subprocess.run(vslm + ["cp", "telecom_r32", "bank_faq"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = subprocess.run(vslm + ["new", "telecom_r32", "Bank-FAQ"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "lowercase letters" in bad.stderr
