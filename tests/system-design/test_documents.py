"""The design documents: each is rendered from its template and scenarios (a committed document that differs
from the render fails, like the scaffold drift test), has the sections a design answer needs, states no number
that the calculator did not compute, and carries the corrected figures where the usual write-ups get them wrong."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import catalog

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "system-design"
TEMPLATES = sorted((DESIGN / "templates").glob("*/*.md"))
SECTIONS = ["Requirements and SLOs", "Back-of-envelope", "Architecture", "Data flow", "Scaling and failure modes",
            "Trade-offs and alternatives", "Cost", "What to monitor", "Interview follow-ups"]


def doc_of(template: Path) -> Path:
    return DESIGN / template.relative_to(DESIGN / "templates")


def test_catalog_units_have_a_template_and_a_document():
    units = [u.path for u in catalog.units() if u.section == "system-design"]
    assert len(units) == 11, units
    for unit in units:
        rel = unit.relative_to("system-design")
        assert (DESIGN / "templates" / rel).exists(), f"no template for {unit}"
        assert (DESIGN / rel).exists(), f"{unit} is not rendered: run .venv/bin/python system-design/render.py"
    assert sorted(str(doc_of(t).relative_to(ROOT)) for t in TEMPLATES) == sorted(map(str, units))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_committed_document_matches_its_render(render, template):
    doc = doc_of(template)
    assert doc.exists(), f"{doc.relative_to(ROOT)} is missing: run .venv/bin/python system-design/render.py"
    assert doc.read_text() == render.render(template), \
        f"{doc.relative_to(ROOT)} differs from what its template renders: run .venv/bin/python system-design/render.py"


def test_readme_matches_its_render_and_lists_every_document_and_scenario(render):
    readme = DESIGN / "README.md"
    assert readme.read_text() == render.render(DESIGN / "templates" / "README.md"), \
        "system-design/README.md differs from templates/README.md: run .venv/bin/python system-design/render.py"
    text = readme.read_text()
    docs = [str(doc_of(t).relative_to(DESIGN)) for t in TEMPLATES]
    missing = [doc for doc in docs if f"]({doc})" not in text]
    missing += [p.name for p in (DESIGN / "scenarios").glob("*.toml") if f"](scenarios/{p.name})" not in text]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("template", [*TEMPLATES, DESIGN / "templates" / "README.md"], ids=lambda p: p.stem)
def test_template_states_no_number_outside_placeholders(render, template):
    typed = render.bare_numbers(template.read_text())
    assert not typed, f"{template.name}: numbers typed by hand (compute them in a scenario): {typed[:5]}"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_document_has_every_section_a_diagram_and_its_sources(template):
    text = doc_of(template).read_text()
    headings = re.findall(r"^## (.+?)\s*$", text, flags=re.M)
    assert headings == SECTIONS, f"{template.name}: sections {headings}, expected {SECTIONS}"
    assert text.count("```mermaid\n") == 1, f"{template.name}: one Mermaid architecture diagram"
    assert re.search(r"^# \S", text, flags=re.M), "a title"
    assert "capacity.py" in text and "../scenarios/" in text, "the footer names the scenarios"
    assert "{{" not in text and "{%" not in text, "unrendered placeholders"


# The corrected figures: each document states the right value and says what the usual mistake is.
CORRECTIONS = {
    "llm/01-llm-inference-gateway.md": ["42.9 GB", "1,073,741,824 B", "$0.37", "73,334 GPUs"],
    "llm/02-distributed-pretraining.md": ["**3.5 billion GPU-s**", "39.6 days", "18 days", "128 nodes"],
    "llm/03-rag-at-scale.md": ["1.67 TB", "10 searches in flight"],
    "llm/04-finetuning-platform.md": ["66.7% of full fine-tuning", "41,943,040"],
    "llm/05-eval-platform.md": ["385 comparisons", "783 comparisons", "±6.86 points"],
    "llm/06-pretraining-data-pipeline.md": ["1,024 permutations", "9 bands", "13 rows"],
    "cv/02-real-time-video-analytics.md": ["6.22 MB", "10,000 frames/s", "11 GPUs"],
    "cv/03-distributed-training.md": ["**5.83 ms**", "16 GB (not", "8.20e9 FLOPs"],
    "cv/04-gpu-tpu-acceleration.md": ["31.5 GB/s each way", "16,384 MACs per cycle"],
    "cv/05-model-serving-at-scale.md": ["1,020 req/s per pod"],
}


@pytest.mark.parametrize("doc", sorted(CORRECTIONS))
def test_corrected_figures_and_a_note_on_the_mistake(doc):
    text = (DESIGN / doc).read_text()
    assert "**Common mistake" in text, f"{doc}: say what the usual mistake is"
    missing = [figure for figure in CORRECTIONS[doc] if figure not in text]
    assert not missing, f"{doc}: expected the corrected figures {missing}"


# ---------------------------------------------------------------------------------------------------------
# The number check and the strict rendering
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "The cluster has 1024 GPUs.", "It costs $5 per hour.", "About 45% MFU.", "A 3× speed-up.", "TTFT < 1 s.",
    "| batch | 32 |",
])
def test_bare_numbers_are_flagged(render, line):
    assert render.bare_numbers(line), line


@pytest.mark.parametrize("line", [
    "H100, A100, T4, p99, bf16, fp8, int4, uint16 and x16.", "Llama-3-8B and Llama-3-70B, YOLOv8m, ResNet-50.",
    "recall@10 and pass@k; 1F1B schedules; ZeRO-3; HTTP/2; S3.", "{{ s.n_gpus }} GPUs at {{ s.mfu }}.",
    "The formula `2·(N−1)/N · B`.", "1. A numbered step.", "See [the gateway](01-llm-inference-gateway.md).",
    "{% set x = 3 %}{# a comment with 5 #}", "<!-- note 42 -->",
])
def test_names_placeholders_code_and_links_pass(render, line):
    assert not render.bare_numbers(line), render.bare_numbers(line)


def test_numbers_inside_mermaid_are_checked_and_other_code_blocks_are_not(render):
    assert render.bare_numbers("```mermaid\nflowchart LR\n  a[\"8 GPUs\"] --> b\n```\n")
    assert not render.bare_numbers("```json\n{\"max_tokens\": 512}\n```\n")


def test_a_bare_float_cannot_reach_the_page(render):
    env = render.environment([])
    with pytest.raises(TypeError, match="bare float"):
        env.from_string("{{ 0.1 + 0.2 }}").render()
    assert env.from_string("{{ (0.1 + 0.2) | fmt('x') }}").render() == "0.3×"


def test_render_check_passes_on_the_committed_documents():
    result = subprocess.run([sys.executable, str(DESIGN / "render.py"), "--check"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "documents match their templates" in result.stdout


def test_render_check_names_a_stale_document(render, tmp_path, monkeypatch):
    # Point the renderer at a copy of one template whose committed output is out of date.
    (tmp_path / "templates" / "llm").mkdir(parents=True)
    (tmp_path / "llm").mkdir()
    source = DESIGN / "templates" / "llm" / "02-distributed-pretraining.md"
    (tmp_path / "templates" / "llm" / source.name).write_text(source.read_text())
    (tmp_path / "templates" / "_macros.jinja").write_text((DESIGN / "templates" / "_macros.jinja").read_text())
    (tmp_path / "llm" / source.name).write_text("stale\n")
    monkeypatch.setattr(render, "TEMPLATES", tmp_path / "templates")
    monkeypatch.setattr(render, "HERE", tmp_path)
    assert [p.name for p in render.stale()] == [source.name]
