"""Every recipe family's "Python quick start" (the ```python block of recipes/families/<domain>.md) runs as
written, with only the base and adapter strings swapped for the tiny rehearsal the comments name (a LoRA
adapter trained here for two steps: telecom_r32 for the Qwen2 families, platform_classifier for Qwen3) and
max_new_tokens cut: it loads base + adapter through PEFT, generates, and prints the decoded answer."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run

pytestmark = pytest.mark.slow
FAMILIES = sorted((ROOT / "recipes" / "families").glob("*.md"))
# one trained recipe per model family; the other recipes of a family share its tiny base and architecture
ADAPTER_RECIPE = {"tiny-qwen2": "telecom_r32", "tiny-qwen3": "platform_classifier"}
MARK = "\n@@quickstart "
BASE_LINE = re.compile(r'^base = "(?P<real>[^"]+)"\s+# tiny rehearsal: "(?P<tiny>[^"]+)"$', re.M)
ADAPTER_LINE = re.compile(r'^adapter = "(?P<real>[^"]+)"\s+# tiny rehearsal: "(?P<tiny>[^"]+)"$', re.M)


def quickstart(md: Path) -> str:
    blocks = re.findall(r"^## Python quick start.*?^```python\n(.*?)^```", md.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, f"{md.name}: expected one ```python block under '## Python quick start'"
    return blocks[0]


@pytest.fixture(scope="session")
def tiny_adapters(tiny_qwen2, tiny_qwen3, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """tiny model name -> (tiny base, a LoRA adapter trained on it for two steps)."""
    out = {}
    for base in (tiny_qwen2, tiny_qwen3):
        recipe = ADAPTER_RECIPE[base.name]
        adapter = tmp_path_factory.mktemp(recipe) / "adapter"
        result = run([sys.executable, "-m", "vslm", "train", recipe, "--profile", "tiny", "max_steps=2", f"output_dir={adapter}"])
        assert result.returncode == 0, result.stderr[-3000:]
        assert (adapter / "adapter_model.safetensors").is_file()
        out[base.name] = (base, adapter)
    return out


@pytest.mark.parametrize("md", FAMILIES, ids=[p.stem for p in FAMILIES])
def test_family_quickstart_runs_on_the_tiny_model(md, tiny_adapters):
    code = quickstart(md)
    base, adapter = BASE_LINE.search(code), ADAPTER_LINE.search(code)
    assert base and adapter, f"{md.name}: the quick start must set `base` and `adapter` with a '# tiny rehearsal:' comment"
    tiny_name = Path(base["tiny"]).name
    assert tiny_name in ADAPTER_RECIPE, f"{md.name}: unknown tiny rehearsal base {base['tiny']!r}"
    assert re.fullmatch(r"saves/tiny/\w+/adapter", adapter["tiny"]), adapter["tiny"]
    tiny_base, tiny_adapter = tiny_adapters[tiny_name]
    code = code.replace(f'"{base["real"]}"', f'"{tiny_base}"', 1).replace(f'"{adapter["real"]}"', f'"{tiny_adapter}"', 1)
    code, n = re.subn(r"max_new_tokens=\d+", "max_new_tokens=16", code)
    assert n == 1, f"{md.name}: expected one max_new_tokens= in the quick start"

    # after the snippet: what it generated and whether the adapter is on. What a two-step adapter on the tiny model
    # samples first is luck (end-of-sequence is a fine first token), so the check is what the quick start promises:
    # it ran through PEFT, generated, and printed exactly the decoded text (which may be empty)
    code += ('\nimport json\nnew = out[0][inputs["input_ids"].shape[1]:]\n'
             'print(MARK + json.dumps({"tokens": len(new), "text": tokenizer.decode(new, skip_special_tokens=True), '
             '"peft": isinstance(model, PeftModel), "adapters": list(model.peft_config)}))\n')
    result = run([sys.executable, "-c", f"MARK = {MARK!r}\n" + code], timeout=600)
    assert result.returncode == 0, f"{md.name} quick start failed:\n{result.stderr[-3000:]}"
    printed, _, facts = result.stdout.rpartition(MARK)
    facts = json.loads(facts)
    assert facts["peft"] and facts["adapters"] == ["default"], facts
    assert facts["tokens"] >= 1, f"{md.name}: generate() returned no new token: {facts}"
    assert printed == facts["text"] + "\n", f"{md.name}: the quick start printed {printed!r}, generated {facts['text']!r}"
