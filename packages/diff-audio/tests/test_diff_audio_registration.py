from diffcore.modality import discover


def test_diff_audio_registers_with_diffuse():
    installed = discover()
    assert "audio" in installed
    assert installed["audio"].distribution == "diff-audio"
    assert installed["audio"].version == "0.1.0"
