"""The dataset card escapes what comes from data (issue 34): a teacher called
``m` <img src=x onerror=alert(5)>`` is shown as text, never rendered as HTML, and a hostile
title cannot break the YAML header."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import polars as pl
import yaml

from curate.publish import PublishConfig, publish_run
from tests.test_publish import fixture_manifest, make_run

HOSTILE = [
    "m` <img src=x onerror=alert(5)>",
    "``` <script>alert(1)</script>",
    "[x](javascript:alert(3)) ![i](http://e.example/x.png)",
    "a|b\n---\n# heading <b>bold</b> &amp;",
    "\\` <iframe src=x></iframe> *em* _u_ ~~s~~",
]
# What a card legitimately renders to; anything else came from data.
ALLOWED_TAGS = {"h1", "h2", "h3", "p", "strong", "em", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
                "br", "blockquote", "details", "summary", "ul", "li", "hr"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text += data


def hostile_run(tmp_path):
    manifest = fixture_manifest()
    for index, step in enumerate(manifest["steps"]):
        step["id"] = HOSTILE[index % len(HOSTILE)]
        step["rejected"] = {HOSTILE[(index + 1) % len(HOSTILE)]: 1} if step.get("rejected") else {}
        step["config"] = {HOSTILE[2]: HOSTILE[index % len(HOSTILE)]}
    for source in manifest["sources"]:
        source.update(name=HOSTILE[0], path=HOSTILE[1], license=HOSTILE[2], format=HOSTILE[3])
    manifest["recipe"].update(name=HOSTILE[3], path=HOSTILE[4], version=HOSTILE[0],
                              text="name: x\ndescription: '" + HOSTILE[1] + "'\n```\n<img src=x onerror=alert(9)>\n")

    def hostile_rows(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            teacher=pl.Series([HOSTILE[i % len(HOSTILE)] for i in range(frame.height)]),
            model=pl.lit(HOSTILE[4]),
            generation_params=pl.lit(json.dumps({HOSTILE[0]: HOSTILE[1]})),
        )

    return make_run(tmp_path, "hostile", transform=hostile_rows, manifest_changes=manifest)


def test_hostile_names_are_text_in_the_card_and_the_yaml_header_holds(tmp_path):
    from huggingface_hub import DatasetCard
    from markdown_it import MarkdownIt

    title = HOSTILE[3] + " " + HOSTILE[0]
    config = PublishConfig(output_dir=tmp_path / "pub", pretty_name=title, author=HOSTILE[1] + "}")
    folder = publish_run(hostile_run(tmp_path), config).folder
    text = (folder / "README.md").read_text()

    header = yaml.safe_load(text.split("---\n")[1])
    assert header["pretty_name"] == " ".join(title.split())  # one line, as written
    assert DatasetCard(text).data.pretty_name == header["pretty_name"]

    page = _Tags()
    page.feed(MarkdownIt("commonmark").enable("table").enable("strikethrough").render(DatasetCard(text).text))
    fences = [("class", f"language-{kind}") for kind in ("python", "json", "yaml", "bibtex")]
    unexpected = [(tag, attrs) for tag, attrs in page.tags
                  if tag not in ALLOWED_TAGS or any(attr not in fences for attr in attrs)]
    assert not unexpected, unexpected
    for name in HOSTILE:  # shown as written (on one line)
        assert " ".join(name.split()) in " ".join(page.text.split()), name
    # A brace in the author cannot end its BibTeX field early.
    assert "  author       = {" + HOSTILE[1] + "\\}},\n" in text


def test_escaping_leaves_ordinary_markdown_as_written(tmp_path):
    """A pipe in a model name shows as written in prose and in tables; the recipe's own
    description keeps its Markdown and shows '<think>' inside code as written."""
    from huggingface_hub import DatasetCard
    from markdown_it import MarkdownIt

    def piped_teacher(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(teacher=pl.lit("org/model|v2"), model=pl.lit("org/model|v2"))

    run = make_run(tmp_path, "piped", transform=piped_teacher)
    description = "Traces with `<think>` blocks, **verified**. <img src=x onerror=alert(1)>"
    folder = publish_run(run, PublishConfig(output_dir=tmp_path / "pub", description=description)).folder
    page = _Tags()
    page.feed(MarkdownIt("commonmark").enable("table").render(DatasetCard((folder / "README.md").read_text()).text))
    assert "org/model\\|v2" not in page.text and page.text.count("org/model|v2") >= 2
    assert "<think>" in page.text and "&lt;think" not in page.text
    assert ("strong", []) in page.tags and not any(tag == "img" for tag, _ in page.tags)
