from diffcore.modality import discover


def test_diff_timeseries_registers_with_diffuse():
    installed = discover()
    assert "timeseries" in installed
    assert installed["timeseries"].distribution == "diff-timeseries"
    assert installed["timeseries"].version == "0.1.0"
