from diffcore.modality import discover


def test_diff_3d_registers_with_diffuse():
    installed = discover()
    assert "3d" in installed
    assert installed["3d"].distribution == "diff-3d"
    assert installed["3d"].version == "0.1.0"
