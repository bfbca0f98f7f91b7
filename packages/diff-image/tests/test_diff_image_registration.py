from diffcore.modality import discover


def test_diff_image_registers_with_diffuse():
    installed = discover()
    assert "image" in installed
    assert installed["image"].distribution == "diff-image"
    assert installed["image"].version == "0.2.0"
