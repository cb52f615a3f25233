"""The benchmark scripts' own logic (their figures are not tests)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import where_time_goes  # noqa: E402


def test_where_time_goes_profiles_both_sides(capsys):
    where_time_goes.main(["--layers", "GATConv", "--graphs", "molecules",
                          "--steps", "1", "--rows", "4"])
    out = capsys.readouterr().out
    for impl in ("pyg", "gnnagg"):
        assert f"===== GATConv on molecules, {impl}, 1 steps on cpu" in out
    assert out.count("Self CPU time total") == 2


def test_where_time_goes_refuses_unknown_names():
    with pytest.raises(SystemExit):
        where_time_goes.main(["--layers", "NoSuchConv"])
