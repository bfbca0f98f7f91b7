from diffcore.modality import discover


def test_diff_video_registers_with_diffuse():
    installed = discover()
    assert "video" in installed
    assert installed["video"].distribution == "diff-video"
    assert installed["video"].version == "0.1.0"
