from diffcore.modality import discover


def test_diff_materials_registers_with_diffuse():
    installed = discover()
    assert "materials" in installed
    assert installed["materials"].distribution == "diff-materials"
    assert installed["materials"].version == "0.1.0"
