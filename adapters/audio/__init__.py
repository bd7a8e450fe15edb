"""Local media: audio files, audio devices and pictures.

* ``files.py``: audio files as async sources of mono float32 blocks;
  ``resample.py``: streaming rate conversion and float32 → int16.
* ``backend.py``: the PortAudio calls the engine makes (protocols, errors);
  ``portaudio.py``: the real backend (sounddevice, imported lazily);
  ``fakeportaudio.py``: the fake one tests use; ``devices.py``: listing and
  resolving devices.
* ``images.py``: pictures for livetranslate's video context;
  ``ffmpeg_pictures.py`` and ``jpeg.py``: the ffmpeg jobs and MJPEG splitting
  behind it.
* ``prepare.py``: media → 16 kHz mono Opus for batch transcription.
"""

from __future__ import annotations
