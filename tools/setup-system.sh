#!/usr/bin/env bash
# Install the system packages Stenograph's tests and tools use, when missing:
# ffmpeg (mp3/m4a/mp4 input, `steno prepare`), flite (demo audio), sox, and
# libportaudio2 (live capture through sounddevice), PulseAudio with the ALSA
# pulse plugin (a null-sink sound device for the real capture tests), and Chromium
# (renders `steno scenario`'s report.html headless in its test; on CI=true a missing
# chromium fails that test). Idempotent; needs root for apt.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v flite >/dev/null || need+=(flite)
command -v sox >/dev/null || need+=(sox)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
# a virtual sound device for the real capture tests (a PulseAudio null sink)
command -v pulseaudio >/dev/null || need+=(pulseaudio)
command -v paplay >/dev/null || need+=(pulseaudio-utils)
[ -e /usr/share/alsa/alsa.conf.d/50-pulseaudio.conf ] || need+=(libasound2-plugins)
# headless Chromium for the scenario report test, and a font for its charts' text
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# systemd-analyze verifies the deploy/systemd unit (tests/deploy)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "setup-system: missing ${need[*]}; fix: sudo apt-get install ${need[*]}" >&2
  exit 0
fi
echo "setup-system: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
