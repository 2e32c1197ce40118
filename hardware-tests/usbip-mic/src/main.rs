//! `hark-usbip-mic`: a USB Audio Class 1 microphone emulated in a process and
//! served over USB/IP, so a guest kernel sees a real USB microphone through
//! `vhci-hcd` and snd-usb-audio (the hardware-in-the-loop tests).
//!
//! Two roles, one binary:
//! - `plug` (on the host): connects to the guest's `listen` (through a QEMU
//!   hostfwd port) and serves the device until it is stopped. Starting it plugs
//!   the microphone in; stopping it (or SIGTERM) unplugs it.
//! - `listen` (in the guest): accepts those connections, imports the device as
//!   the `usbip` tool would (OP_REQ_IMPORT) and hands the socket to `vhci-hcd`
//!   (`/sys/devices/platform/vhci_hcd.0/attach`).
//!
//! Isochronous IN packets are paced at one per millisecond (full speed) and
//! carry a sine tone; unlinks are answered. Protocol: the kernel's
//! Documentation/usb/usbip_protocol.rst.

mod uac;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use uac::{Mic, Reply, State, Tone};

const VERSION: u16 = 0x0111;
const OP_REQ_IMPORT: u16 = 0x8003;
const OP_REP_IMPORT: u16 = 0x0003;
const CMD_SUBMIT: u32 = 1;
const CMD_UNLINK: u32 = 2;
const RET_SUBMIT: u32 = 3;
const RET_UNLINK: u32 = 4;
const BUSID: &str = "1-1";
const SPEED_FULL: u32 = 2;
const EPIPE: i32 = -32;
const ECONNRESET: i32 = -104;
const VHCI: &str = "/sys/devices/platform/vhci_hcd.0";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> ! {
    eprintln!(
        "usage:\n  hark-usbip-mic plug --connect HOST:PORT [--vendor HEX] [--product HEX] \
         [--serial S | --no-serial] [--manufacturer S] [--name S] [--channels N] \
         [--rates R,R,...] [--tone HZ] [--amplitude 0..1]\n  hark-usbip-mic listen [--port N] [--ports COUNT]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plug") => plug(&args[1..]),
        Some("listen") => listen(&args[1..]),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("hark-usbip-mic: {e}");
        std::process::exit(1);
    }
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn hex(s: &str) -> Result<u16, Error> {
    Ok(u16::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

// --- the guest's side ----------------------------------------------------------

/// Listens on `--port` (default 3240) and the `--ports` (default 4) ports after
/// it: a connection to port `base + k` is attached to vhci-hcd port `k`, like a
/// microphone plugged into socket k of a hub, so tests choose the physical port.
fn listen(args: &[String]) -> Result<(), Error> {
    let base: u16 = opt(args, "--port").unwrap_or("3240").parse()?;
    let count: u16 = opt(args, "--ports").unwrap_or("4").parse()?;
    let mut threads = vec![];
    for k in 0..count {
        let listener = TcpListener::bind(("0.0.0.0", base + k))?;
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming() {
                match conn
                    .map_err(Error::from)
                    .and_then(|c| import(c, u32::from(k)))
                {
                    Ok(()) => eprintln!("hark-usbip-mic: attached on vhci port {k}"),
                    Err(e) => eprintln!("hark-usbip-mic: attach on vhci port {k} failed: {e}"),
                }
            }
        }));
    }
    eprintln!("hark-usbip-mic: listening on {base}..{}", base + count - 1);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Imports the device the peer serves and gives the socket to vhci-hcd `port`.
fn import(mut s: TcpStream, port: u32) -> Result<(), Error> {
    s.set_nodelay(true)?;
    let mut req = vec![];
    req.extend(VERSION.to_be_bytes());
    req.extend(OP_REQ_IMPORT.to_be_bytes());
    req.extend(0u32.to_be_bytes());
    let mut busid = [0u8; 32];
    busid[..BUSID.len()].copy_from_slice(BUSID.as_bytes());
    req.extend(busid);
    s.write_all(&req)?;
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let status = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if status != 0 {
        return Err(format!("import refused (status {status})").into());
    }
    let mut dev = [0u8; 312];
    s.read_exact(&mut dev)?;
    let be32 = |o: usize| u32::from_be_bytes([dev[o], dev[o + 1], dev[o + 2], dev[o + 3]]);
    let (busnum, devnum, speed) = (be32(288), be32(292), be32(296));
    if !port_is_free(port)? {
        return Err(format!("vhci port {port} is in use").into());
    }
    let line = format!(
        "{port} {} {} {speed}",
        s.as_raw_fd(),
        (busnum << 16) | devnum
    );
    std::fs::write(format!("{VHCI}/attach"), line)?;
    // vhci-hcd holds its own reference to the socket now.
    Ok(())
}

/// Is vhci-hcd's full/high-speed port `port` free (status 4: VDEV_ST_NULL)?
fn port_is_free(port: u32) -> Result<bool, Error> {
    let status = std::fs::read_to_string(format!("{VHCI}/status"))?;
    Ok(status.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[0] == "hs" && f[1].parse::<u32>().ok() == Some(port) && f[2] == "004"
    }))
}

// --- the host's side -------------------------------------------------------------

fn mic_from(args: &[String]) -> Result<(Mic, Tone), Error> {
    let serial = if args.iter().any(|a| a == "--no-serial") {
        None
    } else {
        Some(opt(args, "--serial").unwrap_or("HARK0001").to_string())
    };
    let rates = opt(args, "--rates")
        .unwrap_or("48000")
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()?;
    let mic = Mic {
        vendor: hex(opt(args, "--vendor").unwrap_or("1209"))?,
        product: hex(opt(args, "--product").unwrap_or("4d10"))?,
        manufacturer: opt(args, "--manufacturer").unwrap_or("hark").into(),
        product_name: opt(args, "--name").unwrap_or("HIL Mic").into(),
        serial,
        channels: opt(args, "--channels").unwrap_or("1").parse()?,
        rates,
    };
    if mic.rates.is_empty() || mic.channels == 0 {
        return Err("need at least one rate and one channel".into());
    }
    let tone = Tone::new(
        opt(args, "--tone").unwrap_or("1000").parse()?,
        opt(args, "--amplitude").unwrap_or("0.5").parse()?,
    );
    Ok((mic, tone))
}

/// An isochronous IN transfer waiting for its time.
struct IsoUrb {
    seqnum: u32,
    /// (offset, length) of each packet, as the host asked.
    packets: Vec<(u32, u32)>,
}

struct Shared {
    queue: Mutex<VecDeque<IsoUrb>>,
    wake: Condvar,
    state: Mutex<State>,
    writer: Mutex<TcpStream>,
    closed: std::sync::atomic::AtomicBool,
}

fn plug(args: &[String]) -> Result<(), Error> {
    let addr = opt(args, "--connect").unwrap_or_else(|| usage());
    let (mic, tone) = mic_from(args)?;
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    // OP_REQ_IMPORT from the guest, answered with the device.
    let mut req = [0u8; 40];
    s.read_exact(&mut req)?;
    if u16::from_be_bytes([req[2], req[3]]) != OP_REQ_IMPORT {
        return Err("the peer did not ask to import".into());
    }
    let mut rep = vec![];
    rep.extend(VERSION.to_be_bytes());
    rep.extend(OP_REP_IMPORT.to_be_bytes());
    rep.extend(0u32.to_be_bytes());
    let mut path = [0u8; 256];
    let p = b"/sys/devices/hark/usbip-mic";
    path[..p.len()].copy_from_slice(p);
    rep.extend(path);
    let mut busid = [0u8; 32];
    busid[..BUSID.len()].copy_from_slice(BUSID.as_bytes());
    rep.extend(busid);
    rep.extend(1u32.to_be_bytes()); // busnum
    rep.extend(2u32.to_be_bytes()); // devnum
    rep.extend(SPEED_FULL.to_be_bytes());
    rep.extend(mic.vendor.to_be_bytes());
    rep.extend(mic.product.to_be_bytes());
    rep.extend(0x0100u16.to_be_bytes());
    rep.extend([0, 0, 0, 1, 1, 2]);
    s.write_all(&rep)?;
    println!("plugged");
    let _ = std::io::stdout().flush();

    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        wake: Condvar::new(),
        state: Mutex::new(State {
            configured: false,
            alt: 0,
            rate: mic.rates[0],
        }),
        writer: Mutex::new(s.try_clone()?),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    let pacer = {
        let shared = shared.clone();
        let channels = mic.channels;
        let max = usize::from(mic.max_packet());
        std::thread::spawn(move || pace(&shared, tone, channels, max))
    };
    let r = serve(&mut s, &mic, &shared);
    shared
        .closed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    shared.wake.notify_all();
    let _ = pacer.join();
    eprintln!(
        "hark-usbip-mic: unplugged ({})",
        r.as_ref().err().map_or("closed".into(), |e| e.to_string())
    );
    Ok(())
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Reads commands until the connection ends.
fn serve(s: &mut TcpStream, mic: &Mic, shared: &Shared) -> Result<(), Error> {
    loop {
        let mut h = [0u8; 48];
        s.read_exact(&mut h)?;
        let (command, seqnum, direction, ep) =
            (be32(&h, 0), be32(&h, 4), be32(&h, 12), be32(&h, 16));
        match command {
            CMD_SUBMIT => {
                let length = be32(&h, 24) as usize;
                let packets = be32(&h, 32);
                let mut setup = [0u8; 8];
                setup.copy_from_slice(&h[40..48]);
                let mut data = vec![0u8; if direction == 0 { length } else { 0 }];
                s.read_exact(&mut data)?;
                let iso = packets != 0 && packets != u32::MAX;
                let mut descs = vec![];
                if iso {
                    let mut d = vec![0u8; packets as usize * 16];
                    s.read_exact(&mut d)?;
                    descs = (0..packets as usize)
                        .map(|i| (be32(&d, i * 16), be32(&d, i * 16 + 4)))
                        .collect();
                }
                if ep == 0 {
                    let reply = {
                        let mut st = shared.state.lock().map_err(|_| "poisoned")?;
                        uac::control(mic, &mut st, setup, &data)
                    };
                    let (status, body) = match reply {
                        Reply::Data(d) => (0, d),
                        Reply::Stall => (EPIPE, vec![]),
                    };
                    let body = if direction == 1 { body } else { vec![] };
                    let actual = if direction == 1 { body.len() } else { length };
                    send_ret(shared, seqnum, status, actual as u32, 0, 0, &body, &[])?;
                } else if iso && direction == 1 {
                    let mut q = shared.queue.lock().map_err(|_| "poisoned")?;
                    q.push_back(IsoUrb {
                        seqnum,
                        packets: descs,
                    });
                    shared.wake.notify_all();
                } else {
                    send_ret(shared, seqnum, EPIPE, 0, 0, 0, &[], &[])?;
                }
            }
            CMD_UNLINK => {
                let victim = be32(&h, 20);
                let found = {
                    let mut q = shared.queue.lock().map_err(|_| "poisoned")?;
                    let before = q.len();
                    q.retain(|u| u.seqnum != victim);
                    q.len() != before
                };
                let mut r = vec![];
                for v in [RET_UNLINK, seqnum, 0, 0, 0] {
                    r.extend(v.to_be_bytes());
                }
                r.extend((if found { ECONNRESET } else { 0 }).to_be_bytes());
                r.extend([0u8; 24]);
                shared
                    .writer
                    .lock()
                    .map_err(|_| "poisoned")?
                    .write_all(&r)?;
            }
            other => return Err(format!("unknown command {other:#x}").into()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn send_ret(
    shared: &Shared,
    seqnum: u32,
    status: i32,
    actual: u32,
    start_frame: u32,
    packets: u32,
    data: &[u8],
    iso: &[(u32, u32, u32)],
) -> Result<(), Error> {
    let mut r = Vec::with_capacity(48 + data.len() + iso.len() * 16);
    for v in [RET_SUBMIT, seqnum, 0, 0, 0] {
        r.extend(v.to_be_bytes());
    }
    r.extend(status.to_be_bytes());
    r.extend(actual.to_be_bytes());
    r.extend(start_frame.to_be_bytes());
    r.extend(packets.to_be_bytes());
    r.extend(0u32.to_be_bytes()); // error_count
    r.extend([0u8; 8]);
    r.extend_from_slice(data);
    for (offset, length, got) in iso {
        for v in [*offset, *length, *got, 0] {
            r.extend(v.to_be_bytes());
        }
    }
    shared
        .writer
        .lock()
        .map_err(|_| "poisoned")?
        .write_all(&r)?;
    Ok(())
}

/// Completes queued isochronous transfers in real time: one packet a millisecond.
///
/// The device's clock runs on like a crystal's. When this thread itself was
/// late (the host was busy) and transfers are waiting, it catches up: a real
/// microphone would have filled them on time. When the guest had no transfer
/// queued for a while (its host controller driver was late, or the stream
/// stopped), those milliseconds of audio are lost, as on a real bus: the clock
/// starts again from now, and the gap is logged so a short capture can be told
/// apart from a fault of the agent under test.
fn pace(shared: &Shared, mut tone: Tone, channels: u8, max: usize) {
    let ms = Duration::from_millis(1);
    let started = Instant::now();
    let mut clock = started;
    let mut frame: u32 = 0;
    let mut served: u64 = 0;
    let mut behind = false;
    loop {
        let Ok(mut q) = shared.queue.lock() else {
            return;
        };
        let mut waited = false;
        while q.is_empty() {
            if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            waited = true;
            q = match shared.wake.wait_timeout(q, Duration::from_millis(100)) {
                Ok((q, _)) => q,
                Err(_) => return,
            };
        }
        let now = Instant::now();
        if waited && clock + 20 * ms < now {
            if served > 0 {
                eprintln!(
                    "hark-usbip-mic: at {:.3} s: no transfer queued by the guest for {} ms ({} ms served so far)",
                    (clock - started).as_secs_f64(),
                    (now - clock).as_millis(),
                    served
                );
            }
            clock = now;
        } else if clock + 20 * ms < now && !behind {
            behind = true;
            eprintln!(
                "hark-usbip-mic: at {:.3} s: this process was {} ms late; catching up",
                (clock - started).as_secs_f64(),
                (now - clock).as_millis()
            );
        } else if clock + 20 * ms >= now {
            behind = false;
        }
        let n = q.front().map_or(0, |u| u.packets.len());
        let due = clock + ms * n as u32;
        // Wait for the transfer's last packet time; an unlink may take it meanwhile.
        while Instant::now() < due {
            let left = due.saturating_duration_since(Instant::now());
            q = match shared.wake.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(_) => return,
            };
            if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        let Some(urb) = q.pop_front() else { continue };
        drop(q);
        clock = due;
        let rate = shared.state.lock().map_or(48_000, |s| s.rate);
        let mut data = vec![];
        let mut iso = vec![];
        for (offset, length) in &urb.packets {
            let p = tone.packet(rate, channels, (*length as usize).min(max));
            iso.push((*offset, *length, p.len() as u32));
            data.extend(p);
        }
        let n = urb.packets.len() as u32;
        if send_ret(
            shared,
            urb.seqnum,
            0,
            data.len() as u32,
            frame,
            n,
            &data,
            &iso,
        )
        .is_err()
        {
            return;
        }
        frame = frame.wrapping_add(n);
        served += u64::from(n);
    }
}
