#!/usr/bin/env bash
# Proves that tests fail when the behaviour they are named after breaks: each
# mutant below breaks one behaviour in a copy of the committed tree (a git
# worktree under target/mutants), builds it, and runs the one test that must
# catch it. A mutant whose test passes "survived": the test cannot see that
# breakage. A mutant whose line is not found fails too (the source moved on:
# update the mutant). Exit status 0 only when every mutant was caught.
#
# Not part of `make test` (each mutant is a rebuild, about 1-3 minutes here).
#
# usage: scripts/mutants.sh [NAME ...]     (default: all)
set -euo pipefail
repo=$(dirname "$(dirname "$(realpath "$0")")")
cd "$repo"

# name | file | exact text to replace (one occurrence) | replacement | test target
# (a tests/ file, or lib for the library's unit tests) | test name
mutants=(
  "format|agent/src/media/pipeline.rs|enc.sample_rate, enc.channels|enc.sample_rate, 1|rtsp|each_stream_is_served_in_its_configured_format"
  "frame-size|agent/src/media/pipeline.rs|enc.bitrate, enc.frame_ms|enc.bitrate, 20|rtsp|opus_packets_carry_the_configured_frame_duration"
  "highpass|agent/src/media/pipeline.rs|if enc.highpass_hz > 0.0 {|if enc.highpass_hz > 1e9 {|rtsp|the_high_pass_removes_what_is_below_its_cutoff_and_keeps_what_is_above"
  "fd-leak|agent/src/media/mod.rs|    if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {|    std::mem::forget(std::fs::File::open(\"/dev/null\"));\n    if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {|devices|device_churn_leaks_no_fds_threads_or_memory"
  "memory-leak|agent/src/media/mod.rs|    if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {|    std::mem::forget(vec![1u8; 16 * 1024]);\n    if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {|devices|device_churn_leaks_no_fds_threads_or_memory"
  "restart-counter|agent/src/health.rs|        self.restarts += 1;|        self.restarts += 0;|alsa|a_failing_source_backs_off_while_others_flow"
  "ledger-names|agent/src/devices/ledger.rs|    fn check(&self) -> Result<(), String> {|    fn check(&self) -> Result<(), String> {\n        return Ok(());|fuzz_corpus|every_fuzz_corpus_input_keeps_its_invariants"
  "uptime-lie|agent/src/deadman/ledger.rs|                c.uptime_s = if c.uptime_s > now.uptime_s.saturating_add(UPTIME_SLACK_S) {|                c.uptime_s = if false {|fuzz_corpus|every_fuzz_corpus_input_keeps_its_invariants"
  "session-leak|agent/src/media/server.rs|            set_nodelay(client);|            std::mem::forget(vec![1u8; 4096]);\n            set_nodelay(client);|churn|mixed_sessions_all_succeed_and_leave_nothing_behind"
  "reload-restarts-all|agent/src/supervisor/machine.rs|wanted.get(name.as_str()) != Some(&&e.spec)|wanted.get(name.as_str()).is_some()|soak|streams_survive_faults_clients_and_pollers"
  "cut-doubles|agent/src/media/recorder.rs|Some(o) => r.fanout.swap_recorder(o.id, seg.id, &seg.appsrc),|Some(_) => r.fanout.attach_recorder(seg.id, &seg.appsrc),|recording|segments_are_cut_on_the_wall_clock_and_nothing_is_lost_at_a_cut"
  "delivery-not-lowered|agent/src/media/sched.rs|gst::StreamStatusType::Enter => enter(),|gst::StreamStatusType::Enter => {}|rtsp|a_clients_delivery_runs_batch_and_the_capture_does_not"
  "delivery-stays-lowered|agent/src/media/sched.rs|gst::StreamStatusType::Leave => leave(),|gst::StreamStatusType::Leave => {}|lib|media::sched::tests::enter_lowers_the_posting_thread_and_leave_restores_it"
  "watcher-ends|agent/src/daemon.rs|() = watcher_gone => Err(DaemonError::WatcherEnded),|() = watcher_gone => std::future::pending().await,|devices|the_device_watcher_ending_ends_the_agent_with_a_clear_error"
  "not-rehearsed|agent/src/daemon.rs|        watch::rehearse(&roots, &cfg);|        let _ = (&roots, &cfg);|devices|a_mic_streams_under_its_name_ends_on_unplug_and_returns_on_replug"
  "rehearsal-stops-short|agent/src/devices/discover.rs|decide_set(&[card], &[], &BTreeSet::new(), cfg, &mut ledger, 0)|decide_set(&[card], &[], &BTreeSet::new(), cfg, &mut ledger, 0).into_iter().take(0).collect::<Vec<_>>()|lib|devices::discover::tests::the_rehearsal_names_plans_and_describes_a_stream_and_keeps_nothing"
)

# The soak (an ignored test) for a minute: its faults each come once in that time.
export SOAK_SECONDS=${SOAK_SECONDS:-60}
work=$repo/target/mutants/tree
export CARGO_TARGET_DIR=$repo/target/mutants/target
mkdir -p "$repo/target/mutants"
git worktree remove --force "$work" 2>/dev/null || rm -rf "$work"
git worktree prune
git worktree add --detach "$work" HEAD >/dev/null
trap 'git -C "$repo" worktree remove --force "$work" 2>/dev/null || true' EXIT

want=("$@")
failed=0
for m in "${mutants[@]}"; do
    IFS='|' read -r name file from to target test <<<"$m"
    if [ ${#want[@]} -gt 0 ] && [[ " ${want[*]} " != *" $name "* ]]; then
        continue
    fi
    git -C "$work" checkout -q -- .
    if ! python3 - "$work/$file" "$from" "$to" <<'EOF'
import sys
path, old, new = sys.argv[1], sys.argv[2], sys.argv[3].replace("\\n", "\n")
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{old!r} occurs {text.count(old)} times in {path}, not once")
open(path, "w").write(text.replace(old, new))
EOF
    then
        echo "mutants: $name: FAILED TO APPLY ($file)"
        failed=1
        continue
    fi
    log=$repo/target/mutants/$name.log
    t=$SECONDS
    # "lib": a unit test in the library; anything else names a tests/ target.
    if [ "$target" = lib ]; then kind=(--lib); else kind=(--test "$target"); fi
    if (cd "$work" && timeout 900 cargo test --locked -q -p hark-agent "${kind[@]}" -- --exact --include-ignored "$test") >"$log" 2>&1; then
        echo "mutants: $name: SURVIVED: $target::$test passed on the broken build ($((SECONDS - t)) s; $log)"
        failed=1
    elif grep -q "could not compile" "$log"; then
        echo "mutants: $name: DID NOT BUILD ($log)"
        failed=1
    else
        why=$(grep -m1 -E "panicked at|assertion" -A2 "$log" | tr '\n' ' ' | cut -c1-240)
        echo "mutants: $name: caught by $target::$test ($((SECONDS - t)) s): $why"
    fi
done
exit $failed
