"""The dashboard in a real browser: Debian's chromium, headless, loads it from a `fume serve`
started here on 127.0.0.1 with a video source (and a token, so the cookie path is exercised),
and the rendered DOM must show the source's card, its smoothed class and a drawn timeline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium): the dashboard's browser test needs it")
def test_dashboard_shows_card_class_and_timeline(serve_process, sequence: Path, tmp_path: Path, predictor) -> None:
    # No --model: the bundled demo model, whose notice the page must show.
    server = serve_process(
        ["--db", str(tmp_path / "h.sqlite"), "--token", "t0ken",
         "--source", f"pen=co2:{sequence / 'co2.mp4'},ch4:{sequence / 'ch4.mp4'},loop"],
        tmp_path / "serve.log",
    )
    server.wait_for(lambda d: d["sources"][0]["processed"] >= 3, "three processed pairs", url=f"{server.url}/api/sources",
                    headers={"Authorization": "Bearer t0ken"})
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=15000", "--dump-dom", f"{server.url}/?token=t0ken"],
        capture_output=True, text=True, timeout=180,
    )
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    card = re.search(r'<article class="card[^"]*" data-source="pen">(.*?)</article>', dom, re.S)
    assert card, f"no card for source pen in the DOM: {dom[-3000:]}"
    html = card.group(1)
    names = "|".join(predictor.label_config.class_names)
    assert re.search(rf'<div class="smoothed-class ({names})">({names}) \(smoothed\)</div>', html), html[:2000]
    assert '<span class="state running">running</span>' in html
    assert re.search(r'<div class="timeline"><div class="uplot[^"]*">.*<canvas', html, re.S), "no timeline drawn"
    assert re.search(r'<img alt="CO2 overlay of pen" src="api/sources/pen/overlay/co2.jpg\?v=\d+">', html)
    assert "pairs/s processed" in html and "cannot reach the service" not in dom
    assert re.search(r'<p id="model-notice">Model demo.onnx: the bundled demo model was trained on FUME\'s synthetic data only', dom), dom[:3000]
