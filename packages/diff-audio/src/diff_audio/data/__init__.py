"""Data for diff-audio: the synthetic music set generated offline (:mod:`diff_audio.data.synth`) and local
folders of real audio (:mod:`diff_audio.data.folder`)."""

from diff_audio.data.folder import AudioFolder, read_metadata
from diff_audio.data.synth import (
    INSTRUMENTS,
    PITCHED,
    SynthConfig,
    SyntheticMusic,
    SynthExample,
    midi_to_hz,
    midi_to_name,
    name_to_midi,
    render_note,
)

__all__ = [
    "INSTRUMENTS",
    "PITCHED",
    "AudioFolder",
    "SynthConfig",
    "SynthExample",
    "SyntheticMusic",
    "midi_to_hz",
    "midi_to_name",
    "name_to_midi",
    "read_metadata",
    "render_note",
]
