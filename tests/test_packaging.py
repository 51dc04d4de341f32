"""The configs and experiment grids FUME ships are package data, found by name through
importlib.resources (so they work from an installed wheel, from any directory). The wheel itself
is built and installed in .ci/run; here only what can be checked in seconds."""

from __future__ import annotations

import glob
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fume.cli import app
from fume.config import config_file, load_config, shipped_configs
from fume.errors import ConfigError
from fume.reporting.grid import get_preset, load_grid, load_presets, shipped_grids, variant_config
from fume.workflows.quickstart import QUICKSTART_CONFIG

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "fume"


def test_shipped_configs_are_found_by_name_inside_the_package():
    package_dir = Path(str(resources.files("fume")))
    configs = shipped_configs()
    assert set(configs) == {"fume_fastscnn", "quickstart"}
    assert set(shipped_grids()) == {"baselines", "ablations", "leakage"}
    for name, path in {**configs, **shipped_grids()}.items():
        assert path.is_file() and path.is_relative_to(package_dir / "configs"), path
    assert config_file("fume_fastscnn") == configs["fume_fastscnn"]
    assert config_file(QUICKSTART_CONFIG) == configs["quickstart"]


def test_every_shipped_config_and_grid_validates():
    for path in shipped_configs().values():
        load_config(path)
    presets = load_presets()
    assert {"quick", "full"} <= set(presets)
    for name in shipped_grids():
        grid = load_grid(name)
        assert grid.name == name and grid.base_path.is_file()
        for preset in presets.values():
            for variant in grid.variants:
                variant_config(grid, variant, seed=0, common=preset.overrides)


def test_unknown_names_give_one_line_errors_listing_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"^unknown grid 'baseline': .*\(shipped: ablations, baselines, leakage\)$"):
        load_grid("baseline")
    with pytest.raises(ConfigError, match=r"^unknown config 'fume': .*\(shipped: fume_fastscnn, quickstart\)$"):
        config_file("fume")
    with pytest.raises(ConfigError, match=r"^unknown preset 'fast'; shipped presets: quick, full$"):
        get_preset("fast")
    with pytest.raises(ConfigError, match="presets"):  # the presets file is not a grid
        load_grid("presets")
    with pytest.raises(ConfigError, match=r"grid file not found: missing\.yaml"):
        load_grid("missing.yaml")  # anything that looks like a path stays a path


def test_user_files_still_work_by_path(tmp_path: Path):
    grid = tmp_path / "mine.yaml"
    base = shipped_configs()["fume_fastscnn"]
    grid.write_text(yaml.safe_dump({"name": "mine", "base": str(base), "variants": [{"name": "fume"}]}))
    assert load_grid(grid).source == grid.resolve()
    assert config_file(str(base)) == base
    # A user's grid may name its base by a shipped config's name.
    grid.write_text(yaml.safe_dump({"name": "mine", "base": "fume_fastscnn", "variants": [{"name": "fume"}]}))
    assert load_grid(grid).base_path == base
    grid.write_text(yaml.safe_dump({"name": "mine", "base": "fume_fast", "variants": [{"name": "fume"}]}))
    with pytest.raises(ConfigError, match=r"mine\.yaml: base: fume_fast is neither a file beside the grid nor a shipped config"):
        load_grid(grid)


def test_cli_takes_grid_and_preset_names_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["experiments", "leakage", "--preset", "quick", "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "leakage" in result.output and "leaky" in result.output
    result = CliRunner().invoke(app, ["experiments", "nope", "--dry-run", "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, ConfigError) and "shipped: ablations, baselines, leakage" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "--config", "nope"])
    assert isinstance(result.exception, ConfigError) and "shipped: fume_fastscnn, quickstart" in str(result.exception)


def test_pyproject_ships_every_config_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fume"]
    # setuptools expands package-data globs relative to the package folder, ** included.
    declared = {Path(p) for pattern in package_data for p in glob.glob(pattern, root_dir=PACKAGE, recursive=True)}
    on_disk = {p.relative_to(PACKAGE) for p in (PACKAGE / "configs").rglob("*.yaml")}
    assert len(on_disk) >= 6 and on_disk <= declared
    assert not (REPO / "configs").exists(), "configs/ moved into the package (src/fume/configs); a second copy would drift"
