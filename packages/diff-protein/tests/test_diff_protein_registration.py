from diffcore.modality import discover


def test_diff_protein_registers_with_diffuse():
    installed = discover()
    assert "protein" in installed
    assert installed["protein"].distribution == "diff-protein"
    assert installed["protein"].version == "0.2.0"
