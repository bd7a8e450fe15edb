#!/bin/sh
# Headless PulseAudio for capture tests: a null sink to play into and record from.
# Works as root, with no sound card, no D-Bus and no systemd. Needs (Debian):
#   pulseaudio pulseaudio-utils libasound2-plugins libportaudio2
#
# Two ways to use it:
#   . tools/pulse-ci.sh; steno_pulse_start; ...tests...; steno_pulse_stop    (sourced)
#   tools/pulse-ci.sh start|stop|status|env                                   (executed)
# `env` prints the variables clients need (KEY=VALUE, one a line) for a caller that
# did not source the script, e.g. a pytest fixture setting up its child processes.
#
# Everything lives under $STENO_PULSE_DIR (default /tmp/steno-pulse); nothing is
# written to $HOME. Devices: play into sink `steno_sink`, record from its monitor
# through the ALSA `pulse` plugin (sounddevice / PortAudio device name `pulse`).
#
# Start the server BEFORE a process imports sounddevice (PortAudio lists devices once,
# at initialisation), or re-initialise PortAudio after starting it.
# Unplugging: `kill -KILL "$(cat "$STENO_PULSE_DIR/pid")"`; replugging: stop, then start.

: "${STENO_PULSE_DIR:=/tmp/steno-pulse}"
export STENO_PULSE_DIR
export PULSE_RUNTIME_PATH="$STENO_PULSE_DIR/run"
export PULSE_STATE_PATH="$STENO_PULSE_DIR/state"
export PULSE_SERVER="unix:$STENO_PULSE_DIR/run/native" # libpulse and the ALSA pulse plugin use it
export PULSE_COOKIE="$STENO_PULSE_DIR/state/cookie"
export PULSE_SINK=steno_sink
export PULSE_SOURCE=steno_sink.monitor

steno_pulse_env() {
  for _v in STENO_PULSE_DIR PULSE_RUNTIME_PATH PULSE_STATE_PATH PULSE_SERVER PULSE_COOKIE \
    PULSE_SINK PULSE_SOURCE; do
    eval "printf '%s=%s\n' \"\$_v\" \"\$$_v\""
  done
}

steno_pulse_status() {
  pactl info >/dev/null 2>&1
}

steno_pulse_start() {
  for _tool in pulseaudio pactl setsid; do
    if ! command -v "$_tool" >/dev/null 2>&1; then
      echo "steno_pulse_start: $_tool not found; fix: apt-get install pulseaudio pulseaudio-utils libasound2-plugins" >&2
      return 1
    fi
  done
  if pactl info >/dev/null 2>&1; then
    echo "steno_pulse_start: a server already answers on $PULSE_SERVER; run steno_pulse_stop first" >&2
    return 1
  fi
  mkdir -p "$PULSE_RUNTIME_PATH" "$PULSE_STATE_PATH" && chmod 700 "$PULSE_RUNTIME_PATH" || return 1
  cat >"$STENO_PULSE_DIR/ci.pa" <<PA
load-module module-native-protocol-unix auth-anonymous=1 socket=$STENO_PULSE_DIR/run/native
load-module module-null-sink sink_name=steno_sink rate=48000 channels=1 sink_properties=device.description=steno_sink
load-module module-always-sink
# Keepalive: a silent stream into steno_sink, so the idle null sink renders 20 ms blocks
# instead of 2 s ones (else a new recording can wait up to 2 s for its first data).
load-module module-null-source source_name=steno_silence rate=48000 channels=1 max_latency_msec=20
load-module module-loopback source=steno_silence sink=steno_sink latency_msec=20 source_dont_move=true sink_dont_move=true
# Re-sync the sink's clock now that the keepalive is attached (else the first ~2 s stay slow).
suspend-sink steno_sink 1
suspend-sink steno_sink 0
set-default-sink steno_sink
set-default-source steno_sink.monitor
PA
  rm -f "$STENO_PULSE_DIR/pid" "$STENO_PULSE_DIR/pulse.log"
  # Its own session (setsid -f): a process-group kill of the caller (timeout, CI) does not
  # take the server down. pulseaudio writes its PID to $PULSE_RUNTIME_PATH/pid.
  setsid -f pulseaudio -n -F "$STENO_PULSE_DIR/ci.pa" --daemonize=no --exit-idle-time=-1 \
    --use-pid-file=yes --log-target=file:"$STENO_PULSE_DIR/pulse.log" </dev/null >/dev/null 2>&1
  # Ready means the whole script ran (the socket answers before the sink exists): its
  # last line makes the sink's monitor the default source.
  _i=0
  until pactl info 2>/dev/null | grep -q '^Default Source: steno_sink.monitor$'; do
    _i=$((_i + 1))
    if [ $_i -gt 100 ] || grep -q '^E:' "$STENO_PULSE_DIR/pulse.log" 2>/dev/null; then
      echo "steno_pulse_start: pulseaudio did not come up" >&2
      cat "$STENO_PULSE_DIR/pulse.log" >&2 2>/dev/null
      [ -f "$PULSE_RUNTIME_PATH/pid" ] && tr -d ' \n' <"$PULSE_RUNTIME_PATH/pid" >"$STENO_PULSE_DIR/pid"
      steno_pulse_stop
      return 1
    fi
    sleep 0.05
  done
  tr -d ' \n' <"$PULSE_RUNTIME_PATH/pid" >"$STENO_PULSE_DIR/pid"
  # A failing load-module in a -F script does not stop pulseaudio: check the log.
  if grep -q '^E:' "$STENO_PULSE_DIR/pulse.log"; then
    echo "steno_pulse_start: errors in $STENO_PULSE_DIR/pulse.log" >&2
    cat "$STENO_PULSE_DIR/pulse.log" >&2
    steno_pulse_stop
    return 1
  fi
}

steno_pulse_stop() {
  [ -f "$STENO_PULSE_DIR/pid" ] || return 0
  _p=$(cat "$STENO_PULSE_DIR/pid")
  _i=0
  [ -n "$_p" ] && kill -TERM "$_p" 2>/dev/null
  # Wait until it is gone or a zombie (PID 1 may take a while to reap an orphan).
  while [ -n "$_p" ] && [ -e "/proc/$_p" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$_p/status" 2>/dev/null; do
    _i=$((_i + 1))
    if [ $_i -gt 100 ]; then
      kill -KILL "$_p" 2>/dev/null
      break
    fi
    sleep 0.05
  done
  # Drop the pid files even for an unreaped zombie, else pulseaudio's stale-PID check
  # refuses the next start with "Daemon already running".
  rm -f "$STENO_PULSE_DIR/pid" "$PULSE_RUNTIME_PATH/pid"
}

if [ "$(basename -- "$0")" = pulse-ci.sh ]; then
  case "${1:-}" in
  start) steno_pulse_start ;;
  stop) steno_pulse_stop ;;
  status) steno_pulse_status ;;
  env) steno_pulse_env ;;
  *)
    echo "usage: $0 start|stop|status|env   (or source it: . $0)" >&2
    exit 2
    ;;
  esac
fi
