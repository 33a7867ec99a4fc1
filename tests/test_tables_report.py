import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tutorial_lib import paths, report, tables  # noqa: E402


def test_published_figures_come_from_the_data_file():
    assert tables.published_value("vgg19_cifar100", "VGG19-BN baseline", "top1") == 73.11
    assert tables.published_value("constrained", "Adaptive constrained pruning", "params") == 2_004_846
    assert "seed" in tables.published_source("vgg19_cifar100", "VGG19-BN baseline", "top1")
    with pytest.raises(KeyError, match="rows:"):
        tables.published_value("vgg19_cifar100", "ResNet", "top1")
    assert tables.published_or_blank("vgg19_cifar100", "VGG19-BN baseline", "top1") == 73.11
    assert tables.published_or_blank("vgg19_cifar100", "ResNet", "top1") == ""  # a blank cell, not an error
    assert tables.published_or_blank("vgg19_cifar100", None, "top1") == ""


@pytest.mark.parametrize("value, text", [(20086692, "20,086,692"), (20086692.0, "20,086,692"), (93.1, "93.1"),
                                         (0.0, "0"), (-1.25, "-1.25"), (float("nan"), ""), ("x", "x"), (None, "")])
def test_format_cell(value, text):
    assert tables.format_cell(value) == text


def test_publish_writes_csv_and_markdown_with_provenance_and_manifest():
    df = pd.DataFrame({"model": ["a", "b"], "params": [1200, 34], "published": [73.11, ""]})
    md = tables.publish(df, "demo", lesson="01", title="Demo", profile="smoke", dataset="fake", seed=0)
    folder = paths.results_dir("smoke") / "tables"
    assert pd.read_csv(folder / "01_demo.csv")["params"].tolist() == [1200, 34]
    assert "Measured on: fake; profile: smoke, seed 0." in md and "1,200" in md
    assert (folder / "01_demo.md").read_text() == md
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    tables.save_figure(fig, "curve", lesson="01", title="A curve", profile="smoke", order=-1)
    tables.publish(df, "later", lesson="02", title="Later", profile="smoke", dataset="fake")
    names = [(i["lesson"], i["name"]) for i in tables.manifest("smoke")]
    assert names == [("01", "curve"), ("01", "demo"), ("02", "later")]
    tables.publish(df, "demo", lesson="01", title="Demo again", profile="smoke", dataset="fake")
    assert len(tables.manifest("smoke")) == 3  # re-publishing replaces, never duplicates


def test_report_gathers_tables_and_figures_in_lesson_order():
    df = pd.DataFrame({"x": [1]})
    tables.publish(df, "t2", lesson="02", title="Second lesson table", profile="smoke", dataset="fake")
    tables.publish(df, "t1", lesson="01", title="First lesson table", profile="smoke", dataset="fake")
    fig, _ = plt.subplots()
    tables.save_figure(fig, "f1", lesson="01", title="First figure", profile="smoke", order=5)
    (paths.results_dir("smoke") / "timings.json").write_text('{"01_mask_module.ipynb": 12.5}')
    text = report.build("smoke").read_text()
    for key in ("git commit", "torch", "CPU", "threads", "profile", "seed", "date", "01_mask_module.ipynb | 12.5"):
        assert key in text
    assert text.index("First lesson table") < text.index("First figure") < text.index("Second lesson table")
    assert "![First figure](figures/01_f1.png)" in text


def test_a_publisher_names_its_lesson_profile_dataset_and_seed_and_numbers_what_it_publishes(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("TUTORIAL_RESULTS", str(tmp_path))
    pub = tables.Publisher("09", "smoke", seed=3)
    df = pd.DataFrame({"method": ["a"], "top-1 %": [50.0]})
    with pytest.raises(ValueError, match="measured on"):
        pub.table(df, "first", "First")
    pub.dataset = "digits"
    text = pub.table(df, "first", "First", notes="a note")
    assert text.startswith("**First**\n\nMeasured on: digits; profile: smoke, seed 3.") and text.endswith("a note\n")
    assert "seed" not in pub.table(df, "second", "Second", dataset="elsewhere", seed=None).splitlines()[2]
    fig, _ = plt.subplots()
    pub.figure(fig, "plot", "A figure")
    plt.close(fig)
    items = tables.manifest("smoke")
    assert [(i["name"], i["order"]) for i in items] == [("first", 1), ("second", 2), ("plot", 3)]
    assert (tmp_path / "smoke" / "tables" / "09_first.csv").exists()
