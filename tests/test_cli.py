"""The console script: help lists the commands; errors are one clear line and exit 1."""

from __future__ import annotations

from typer.testing import CliRunner

from emowatch.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "params",
        "prepare",
        "crop-faces",
        "augment",
        "tune",
        "train",
        "evaluate",
        "register",
        "promote",
        "info",
    ):
        assert command in result.output


def test_train_help_explains_options():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--dataset" in result.output and "--model" in result.output


def test_unknown_model_is_a_clear_error(tmp_path):
    result = runner.invoke(
        app, ["train", "-d", "fer2013", "-m", "cnn9", f"tracking.db={tmp_path}/m.db"]
    )
    assert result.exit_code == 1 and "unknown model 'cnn9'" in result.output


def test_params_check_passes_in_the_repo():
    result = runner.invoke(app, ["params", "--check"])
    assert result.exit_code == 0, result.output
    assert "matches" in result.output


def test_prepare_on_missing_data_exits_1_with_message(make_cfg, tmp_path):
    result = runner.invoke(
        app,
        [
            "prepare",
            f"paths.data_dir={tmp_path}/none",
            f"tracking.db={tmp_path}/mlflow.db",
            f"paths.reports_dir={tmp_path}/r",
            f"tracking.artifacts_dir={tmp_path}/a",
        ],
    )
    assert result.exit_code == 1
    assert "not found" in result.output and "dvc pull" in result.output


def test_bad_override_is_reported():
    result = runner.invoke(app, ["info", "no_such_group=x"])
    assert result.exit_code == 1
    assert "cannot load the configuration" in result.output


def test_info_prints_the_mlflow_ui_command():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "mlflow ui --backend-store-uri sqlite:///" in result.output
    # a link that opens the runs table, not MLflow 3's GenAI overview
    assert "#/experiments" in result.output and "workflowType=machine_learning" in result.output


def test_an_unknown_dataset_is_a_usage_error_before_anything_runs():
    for args in (["train", "-d", "foo", "-m", "cnn1"], ["history", "-d", "foo"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.replace("│", " ").split())  # unwrap the error box
        assert "'foo' is not a dataset: fer2013 or photos" in said
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_mistyped_or_unknown_override_is_one_line_naming_the_key(tmp_path):
    """Checked at start, for a composed config and for a params file (`--params`) alike."""
    params = tmp_path / "params.yaml"
    params.write_text("seed: 42\ndeploy:\n  watch:\n    alerts: {k: 3, n: 5}\n")
    cases = [
        (["info", "deploy.watch.alerts.k=three"], "deploy.watch.alerts.k holds an integer"),
        (
            [
                "train",
                "-d",
                "fer2013",
                "-m",
                "cnn1",
                "--params",
                str(params),
                "deploy.watch.alert.k=3",
            ],
            "unknown key deploy.watch.alert.k in the overrides; did you mean deploy.watch.alerts.k",
        ),
        (
            ["train", "-d", "fer2013", "-m", "cnn1", "--params", str(params), "seed=[1]"],
            "seed holds an integer (now 42), not a list",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert result.output.count("\n") == 1 and message in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
