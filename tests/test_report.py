"""The demo's report page: well-formed HTML with nothing fetched from outside, a first sentence
that states the verdict with the regret, cards coloured by what their number means, bounds
shown as bounds, the settings, version and command, no Python reprs; and (where a headless
Chromium is installed) a screenshot that shows the page renders."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from small_configs import small_demo_settings

from sizeup import __version__
from sizeup.demo import AXES, reproduce_command, run_demo, settings_for
from sizeup.report.html import Report
from sizeup.report.transfer import drift_is_good, regret_is_good, verdict_sentence
from sizeup.sweep.estimate import Estimate
from sizeup.sweep.testing import NoisySynthetic, synthetic_run

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class _Checker(HTMLParser):
    """Collects unbalanced tags and every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.urls += [(tag, v or "") for k, v in attrs if k in ("src", "href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.urls += [(tag, v or "") for k, v in attrs if k in ("src", "href")]
        if tag not in VOID:
            self.problems.append(f"<{tag}/> self-closes a non-void element")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.problems.append(f"</{tag}> closes a void element")
        elif not self.stack or self.stack[-1] != tag:
            open_tag = self.stack[-1] if self.stack else "nothing"
            self.problems.append(f"</{tag}> closes <{open_tag}>")
        else:
            self.stack.pop()


def html_problems(text: str) -> list[str]:
    """Why ``text`` is not a well-formed, self-contained page (empty when it is)."""
    c = _Checker()
    c.feed(text)
    c.close()
    problems = c.problems + [f"<{t}> never closed" for t in c.stack]
    if not text.lower().startswith("<!doctype html>"):
        problems.append("no doctype")
    for tag, url in c.urls:
        if re.match(r"(https?:)?//", url.strip(), re.I):
            problems.append(f"<{tag}> loads or links {url[:60]}")
        if tag == "img" and not url.startswith("data:image/png;base64,"):
            problems.append(f"<img> not embedded: {url[:60]}")
    if re.search(r"url\(|@import|<script|<link", text, re.I):
        problems.append("CSS url(), @import, a script or a stylesheet link")
    return problems


def _body_text(page: str) -> str:
    """The page's visible text, the raw summary.json block left out."""
    body = page.split("<body>", 1)[1]
    body = re.sub(r"<details>.*?</details>", "", body, flags=re.S)
    body = re.sub(r'src="[^"]*"', "", body)
    return re.sub(r"<[^>]+>", " ", body)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The shipped quick width study, trained by the stand-in (SP's optimum drifts one octave
    per doubling, past the lr grid at width 256; muP's stays at 2^-8)."""
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(out, quick=True, runner=NoisySynthetic(0.02), workers=1, progress=False)
    return summary, (out / "report.html").read_text(encoding="utf-8")


def test_the_demo_page_is_well_formed_and_self_contained(demo):
    _, page = demo
    assert html_problems(page) == []
    assert page.count("data:image/png;base64,") == 3  # curves, optima, training curves


def test_the_checker_catches_what_it_should():
    bad = '<!doctype html><html><body><p>open <b>x</p><img src="https://e.org/a.png"></body>'
    found = " | ".join(html_problems(bad))
    assert "</p> closes <b>" in found and "https://e.org" in found and "not embedded" in found
    assert html_problems(Report("t").text("a < b & c").to_html()) == []


def test_the_page_opens_with_the_verdict_and_its_regret(demo):
    summary, page = demo
    first = re.search(r"<h1>.*?</h1>\s*<p[^>]*>(.*?)</p>", page, re.S).group(1)
    assert first.startswith("Reusing the lr tuned at width 32 for width 256 costs ")
    # SP's optimum at width 256 lies below the grid: its regret is a lower bound
    assert "at least" in first and "with SP" in first
    assert re.search(
        r"nothing measurable \((90% interval 0 to [\d.]+|0 in every seed resample)\) with muP",
        first,
    )
    assert first.count(".") >= 2 and first.rstrip().endswith(".")


def test_cards_are_coloured_by_meaning_and_bounds_shown(demo):
    _, page = demo
    cards = dict(
        (k, (cls, v))
        for cls, v, k in re.findall(
            r'<div class="v ?(\w*)">(.*?)</div><div class="k">(.*?)</div>', page
        )
    )
    cls, value = cards["SP: optimal lr drift (octaves)"]
    assert cls == "bad" and value.startswith("≥ ")  # a bound, and not green
    assert cards["muP: optimal lr drift (octaves)"][0] == "ok"
    assert cards["muP: regret at width 256 (nats/token)"][0] == "ok"
    assert "≤ -11.00" in page  # SP's optimum at width 256, in the table


def test_settings_version_and_command_and_no_reprs(demo):
    _, page = demo
    text = _body_text(page)
    for words in (
        "GPT, depth 2, head dim 32, base width 32",
        "32, 64, 128, 256",
        "300",  # steps
        "8 x 64 tokens",
        "153,600",  # tokens per run: 300 steps x 8 x 64
        "validation loss (nats/token)",
        f"sizeup {__version__}",
    ):
        assert words in text, words
    assert "<pre><code>sizeup demo --axis width --quick --seeds 0,1,2</code></pre>" in page
    bad = re.findall(
        r"\{'|'\}|\[\d+(?:, \d+)+\]|\bNone\b|\bTrue\b|\bFalse\b|\bnan\b|object at 0x|Estimate\(",
        text,
    )
    assert bad == [], bad


@pytest.mark.parametrize("axis", [a for a in AXES if a != "width"])
def test_every_axis_page_is_well_formed_and_opens_with_its_verdict(tmp_path, axis):
    s = small_demo_settings(axis)
    run_demo(tmp_path, settings=s, runner=synthetic_run, workers=1, progress=False)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html_problems(page) == []
    first = re.search(r'<p class="lead">(.*?)</p>', page).group(1)
    assert first.startswith("At " if axis == "stability" else "Reusing the lr tuned at ")
    assert all(f"with {v.name}" in html.unescape(first) for v in s.variants)
    assert "not one of the shipped studies" in page  # reduced settings: no false command


def test_the_demo_command_prints_the_verdict_first(tmp_path, monkeypatch, capsys):
    import sizeup.demo as demo_module
    from sizeup.cli import main

    real = demo_module.run_demo

    def stand_in(*args, **kw):
        return real(*args, **kw, runner=NoisySynthetic(0.05), progress=False)

    monkeypatch.setattr(demo_module, "run_demo", stand_in)
    main(["demo", "--quick", "--workers", "1", "--out", str(tmp_path)])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Reusing the lr tuned at width 32 for width 256 costs at least")
    assert first.endswith("with muP.")


def test_reproduce_command_only_for_a_shipped_study():
    quick = settings_for("depth", quick=True)
    from dataclasses import replace

    s = replace(quick, seeds=[3, 4, 5])
    assert reproduce_command(s, quick=True) == "sizeup demo --axis depth --quick --seeds 3,4,5"
    assert reproduce_command(s, quick=False) is None
    assert reproduce_command(replace(s, lr_exps=[-9, -8]), quick=True) is None


def _summary(regrets: dict[str, Estimate], enough: bool = True, axis: str = "width") -> dict:
    field = {"width": "width", "steps": "steps"}[axis]
    values = [32, 256] if axis == "width" else [100, 800]
    out: dict = {
        "axis": axis,
        "field": field,
        "settings": {"values": values, "base": {"model": "gpt"}},
        "interval": {"level": 0.9},
        "variants": {k: {"name": k.upper()} for k in regrets},
    }
    for k, e in regrets.items():
        out[k] = {"enough": enough, "regret": {str(values[-1]): e.to_dict()}}
    return out


def test_verdict_sentence_is_honest_about_intervals_and_bounds():
    s = verdict_sentence(
        _summary(
            {
                "sp": Estimate(0.0884, lo=0.05, hi=0.12),
                "mup": Estimate(0.0002, lo=0.0, hi=0.013),
                "z": Estimate(0.04, lo=0.0, hi=0.1),
                "x": Estimate(0.4, bound=">="),
                "y": Estimate(0.02),
            }
        )
    )
    assert s == (
        "Reusing the lr tuned at width 32 for width 256 costs 0.088 nats/token (90% interval "
        "0.050 to 0.120) with SP, nothing measurable (90% interval 0 to 0.013) with MUP, "
        "0.040 nats/token, not distinguishable from 0 (90% interval 0 to 0.100) with Z, at "
        "least 0.400 nats/token (the best lr lies beyond the grid) with X and 0.020 nats/token "
        "(one seed: no interval) with Y."
    )
    s = verdict_sentence(_summary({"off": Estimate(0.1)}, enough=False, axis="steps"))
    assert s.startswith("Reusing the lr tuned at 100 steps for 800 steps costs no verdict")


def test_card_colours_follow_the_number():
    assert drift_is_good(Estimate(0.1, lo=0.0, hi=0.3)) is True
    assert drift_is_good(Estimate(3.1, lo=2.8, hi=3.4)) is False
    assert drift_is_good(Estimate(2.0, bound=">=")) is False
    assert drift_is_good(Estimate(0.7, lo=0.2, hi=1.2)) is None  # neither: left uncoloured
    assert regret_is_good(Estimate(0.004, lo=0.0, hi=0.013)) is True
    assert regret_is_good(Estimate(0.9, lo=0.8, hi=1.0)) is False
    assert regret_is_good(Estimate(0.4, bound=">=")) is False


# --- a screenshot ------------------------------------------------------------------------
def _chromium() -> str | None:
    """A headless-capable Chromium: on PATH, or one of playwright's downloaded browsers."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    roots = [os.environ.get("PLAYWRIGHT_BROWSERS_PATH"), str(Path.home() / ".cache/ms-playwright")]
    for root in filter(None, roots):
        for exe in sorted(Path(root).glob("chromium*/chrome-linux*/chrome")):
            return str(exe)
    return None


def test_the_page_renders_in_headless_chromium(demo, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "no headless Chromium here (looked for chromium, chromium-browser, google-chrome, "
            "google-chrome-stable on PATH and playwright's browsers)"
        )
    page = tmp_path / "report.html"
    page.write_text(demo[1], encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,3000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(shot)[..., :3]
    # rows with anything but the white background: the page's rendered height in pixels
    drawn = np.flatnonzero((img < 0.98).any(axis=(1, 2)))
    assert img.shape[0] > 0 and drawn.size > 0 and drawn[-1] - drawn[0] > 200
