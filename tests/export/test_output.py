"""Output folders of export and train: a foreign folder is refused, a failed build leaves the old
one as it was, and tool versions are listed the same way for both."""

import pytest

from embedrt.errors import ConfigError
from embedrt.export.output import check_replaceable, replacing, tool_versions


def test_foreign_folders_and_files_are_refused(tmp_path):
    out = tmp_path / "out"
    check_replaceable(out, "embedrt.json", "refused")  # not there yet
    out.mkdir()
    check_replaceable(out, "embedrt.json", "refused")  # empty
    (out / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="^refused$"):
        check_replaceable(out, "embedrt.json", "refused")
    (out / "embedrt.json").write_text("{}")
    check_replaceable(out, "embedrt.json", "refused")  # ours: may be replaced
    with pytest.raises(ConfigError):
        check_replaceable(out / "notes.txt", "embedrt.json", "refused")


def test_replacing_swaps_in_a_complete_folder_only(tmp_path):
    out = tmp_path / "nested" / "out"
    with replacing(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".out.partial-")
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"

    with pytest.raises(RuntimeError), replacing(out) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("build failed")
    assert (out / "a").read_text() == "1", "a failed build leaves the previous folder"

    with replacing(out) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert [p.name for p in out.parent.iterdir()] == ["out"], "no hidden folders left"


def test_tool_versions():
    assert list(tool_versions(["numpy", "no-such-dist-embedrt"])) == ["numpy"]
    versions = tool_versions(["no-such-dist-embedrt", "numpy"], "not installed")
    assert list(versions) == ["no-such-dist-embedrt", "numpy"]
    assert versions["no-such-dist-embedrt"] == "not installed" and versions["numpy"][0].isdigit()
