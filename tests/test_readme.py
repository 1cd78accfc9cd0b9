"""The README's promises stay true: its recipe table is what `vslm list` prints, its commands exist."""

import re

from conftest import ROOT

from vslm.recipes.listing import recipe_table

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_recipe_table_matches_vslm_list():
    block = README.split("<!-- LIST:START -->")[1].split("<!-- LIST:END -->")[0].strip()
    assert block == recipe_table(markdown=True), "README recipe table is stale: paste `vslm list --markdown`"


def test_two_setup_commands_and_ci_calls_the_test_command():
    setup = README.split("## Set-up: two commands")[1].split("```")[1]
    commands = [l.split("#")[0].strip() for l in setup.splitlines() if l.split("#")[0].strip() and l.strip() != "bash"]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call the README's test command"


def test_every_recipe_family_has_a_readme_with_numbered_steps():
    from vslm.recipes.matrix import load_recipes

    domains = {r["domain"] for r in load_recipes().values()}
    for domain in domains:
        text = (ROOT / "recipes" / "families" / f"{domain}.md").read_text(encoding="utf-8")
        assert re.search(r"^1\. ", text, re.M) and re.search(r"^2\. ", text, re.M), domain
