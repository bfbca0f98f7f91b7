from diffcore.modality import discover


def test_diff_language_registers_with_diffuse():
    installed = discover()
    assert "language" in installed
    assert installed["language"].distribution == "diff-language"
    assert installed["language"].version == "0.2.0"
