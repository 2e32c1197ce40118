//! Groups on the media thread: a group's pipeline is its own live source of
//! silence, each buffer filled from its [`Mixer`]; its members' capture
//! pipelines each get a branch off their `tap` tee (a "tap") that hands raw audio
//! to the member's [`Input`](super::mixer::Input). A microphone is opened once,
//! whatever groups it is in.
//!
//! Taps come and go with the member's pipeline and the group: added when either
//! starts and the other runs, dropped with a member's pipeline, unlinked from a
//! running member when its group is removed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::mixer::{self, Mixer, SharedInput};
use super::pipeline;
use crate::config::{GroupSpec, Members};

/// A group's mixer, shared by its pipeline's streaming thread (render), the
/// bus watch (status) and the media thread (taps).
pub type SharedMixer = Arc<Mutex<Mixer>>;

pub fn lock(m: &SharedMixer) -> std::sync::MutexGuard<'_, Mixer> {
    // Every update leaves the mixer whole; a panic elsewhere cannot tear it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A mounted group: what it was configured as, and its mixer.
pub struct GroupRun {
    pub spec: GroupSpec,
    pub mixer: SharedMixer,
}

impl GroupRun {
    pub fn new(spec: &GroupSpec) -> GroupRun {
        let channels = spec.member_channels as usize;
        let mixer = match &spec.members {
            Members::Listed(members) => {
                let members: Vec<(String, f32)> = members
                    .iter()
                    .map(|m| (m.name.clone(), pipeline::db_to_linear(m.gain_db) as f32))
                    .collect();
                Mixer::new(spec.mode, channels, &members, true)
            }
            Members::AllDevices => Mixer::new(spec.mode, channels, &[], false),
        };
        GroupRun {
            spec: spec.clone(),
            mixer: Arc::new(Mutex::new(mixer)),
        }
    }

    /// The input `member` feeds, if it is a member (adding it to an "all" mix).
    pub fn input_for(&self, member: &str, device: bool) -> Option<SharedInput> {
        if !self.spec.has_member(member, device) {
            return None;
        }
        let mut m = lock(&self.mixer);
        Some(match m.input(member) {
            Some(i) => i,
            None => m.add(member, 1.0, self.spec.member_channels as usize),
        })
    }
}

/// Makes the group's source buffers carry the mix (or merge) of its members.
pub fn render_into(pipeline: &gst::Pipeline, mixer: SharedMixer) -> Result<(), String> {
    let pad = pipeline
        .by_name("groupcaps")
        .and_then(|e| e.static_pad("src"))
        .ok_or("the group pipeline has no source to fill")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            let buffer = buffer.make_mut();
            // audiotestsrc marks its silence as a gap, which the chain would
            // skip without reading; this buffer carries the group's audio.
            buffer.unset_flags(gst::BufferFlags::GAP);
            if let Ok(mut map) = buffer.map_writable() {
                let bytes = map.as_mut_slice();
                let mut out = vec![0f32; bytes.len() / 4];
                lock(&mixer).render(&mut out);
                for (b, x) in bytes.chunks_exact_mut(4).zip(&out) {
                    b.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// A member's branch into one group.
pub struct Tap {
    tee_pad: gst::Pad,
    branch: gst::Bin,
    pub input: SharedInput,
}

/// Adds a branch to `pipeline` (a running member capture) feeding `input`.
pub fn add_tap(pipeline: &gst::Pipeline, group: &str, input: SharedInput) -> Result<Tap, String> {
    let channels = mixer::lock(&input).channels() as u32;
    let tee = pipeline
        .by_name(pipeline::TAP)
        .ok_or("the capture pipeline has no tap")?;
    let branch = gst::parse::bin_from_description(&pipeline::tap_description(channels), true)
        .map_err(|e| format!("cannot build the tap: {e}"))?;
    // A name of its own: a tap being removed from this pipeline (its group
    // changed) may still be there when the new one is added.
    static TAPS: AtomicU64 = AtomicU64::new(0);
    let n = TAPS.fetch_add(1, Ordering::Relaxed);
    branch.set_property("name", format!("tap-{group}-{n}"));
    let sink = branch
        .by_name("raw")
        .and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok())
        .ok_or("the tap has no appsink")?;
    let target = input.clone();
    sink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    let samples: Vec<f32> = map
                        .as_slice()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    mixer::lock(&target).push(&samples);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline
        .add(&branch)
        .map_err(|e| format!("cannot add the tap: {e}"))?;
    let tee_pad = tee
        .request_pad_simple("src_%u")
        .ok_or("the tap tee gave no pad")?;
    let sink_pad = branch.static_pad("sink").ok_or("the tap has no input")?;
    let linked = branch
        .sync_state_with_parent()
        .map_err(|e| format!("cannot start the tap: {e}"))
        .and_then(|_| {
            tee_pad
                .link(&sink_pad)
                .map(|_| ())
                .map_err(|e| format!("cannot link the tap: {e:?}"))
        });
    if let Err(e) = linked {
        tee.release_request_pad(&tee_pad);
        let _ = branch.set_state(gst::State::Null);
        let _ = pipeline.remove(&branch);
        return Err(e);
    }
    Ok(Tap {
        tee_pad,
        branch,
        input,
    })
}

/// Takes a tap out of its still-running member pipeline: unlinked between two
/// buffers, then stopped and removed.
pub fn remove_tap(tap: Tap) {
    mixer::lock(&tap.input).reset();
    let branch = tap.branch;
    tap.tee_pad
        .add_probe(gst::PadProbeType::IDLE, move |pad, _info| {
            if let Some(peer) = pad.peer() {
                let _ = pad.unlink(&peer);
            }
            if let Some(tee) = pad.parent_element() {
                tee.release_request_pad(pad);
            }
            let _ = branch.set_state(gst::State::Null);
            if let Some(parent) = branch.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) {
                let _ = parent.remove(&branch);
            }
            gst::PadProbeReturn::Remove
        });
}
