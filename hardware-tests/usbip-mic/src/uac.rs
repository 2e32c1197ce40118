//! The emulated microphone as a USB device: its descriptors (USB Audio Class 1,
//! one capture terminal, one streaming interface with PCM 16-bit at the given
//! rates) and its answers to control requests. Pure: bytes in, bytes out.

/// What the microphone looks like to the host.
#[derive(Debug, Clone)]
pub struct Mic {
    pub vendor: u16,
    pub product: u16,
    pub manufacturer: String,
    pub product_name: String,
    /// `None`: the device has no serial number string.
    pub serial: Option<String>,
    pub channels: u8,
    pub rates: Vec<u32>,
}

const AUDIO: u8 = 1;
const AUDIOCONTROL: u8 = 1;
const AUDIOSTREAMING: u8 = 2;
const CS_INTERFACE: u8 = 0x24;
const CS_ENDPOINT: u8 = 0x25;
/// The isochronous IN endpoint the audio comes from.
pub const EP_IN: u8 = 0x81;

impl Mic {
    /// Bytes per 1 ms packet at the highest rate (one extra frame for rates that
    /// are not a multiple of 1000).
    pub fn max_packet(&self) -> u16 {
        let max = self.rates.iter().copied().max().unwrap_or(48_000);
        let frames = max.div_ceil(1000) + 1;
        u16::try_from(frames * u32::from(self.channels) * 2)
            .unwrap_or(1023)
            .min(1023)
    }

    pub fn device_descriptor(&self) -> Vec<u8> {
        let [vl, vh] = self.vendor.to_le_bytes();
        let [pl, ph] = self.product.to_le_bytes();
        vec![
            18,
            1,
            0x10,
            0x01, // USB 1.1: a full-speed device
            0,
            0,
            0, // class per interface
            64,
            vl,
            vh,
            pl,
            ph,
            0x00,
            0x01, // bcdDevice 1.00
            1,
            2,
            if self.serial.is_some() { 3 } else { 0 },
            1,
        ]
    }

    pub fn config_descriptor(&self) -> Vec<u8> {
        let ch = self.channels;
        let channel_config: u16 = if ch == 2 { 0x0003 } else { 0 };
        let [ccl, cch] = channel_config.to_le_bytes();
        // AudioControl: header, input terminal (microphone), output terminal (USB streaming).
        let ac_len: u16 = 9 + 12 + 9;
        let [al, ah] = ac_len.to_le_bytes();
        let mut ac = vec![9, CS_INTERFACE, 0x01, 0x00, 0x01, al, ah, 1, 1];
        ac.extend([12, CS_INTERFACE, 0x02, 1, 0x01, 0x02, 0, ch, ccl, cch, 0, 0]);
        ac.extend([9, CS_INTERFACE, 0x03, 2, 0x01, 0x01, 0, 1, 0]);

        let mut format = vec![0, CS_INTERFACE, 0x02, 1, ch, 2, 16];
        format.push(u8::try_from(self.rates.len()).unwrap_or(1));
        for r in &self.rates {
            format.extend_from_slice(&r.to_le_bytes()[..3]);
        }
        format[0] = u8::try_from(format.len()).unwrap_or(0);
        let [ml, mh] = self.max_packet().to_le_bytes();

        let mut body = vec![];
        body.extend([9, 4, 0, 0, 0, AUDIO, AUDIOCONTROL, 0, 0]);
        body.extend(ac);
        body.extend([9, 4, 1, 0, 0, AUDIO, AUDIOSTREAMING, 0, 0]);
        body.extend([9, 4, 1, 1, 1, AUDIO, AUDIOSTREAMING, 0, 0]);
        body.extend([7, CS_INTERFACE, 0x01, 2, 1, 0x01, 0x00]);
        body.extend(format);
        // Isochronous, asynchronous IN; a sampling-frequency control.
        body.extend([9, 5, EP_IN, 0x05, ml, mh, 1, 0, 0]);
        body.extend([7, CS_ENDPOINT, 0x01, 0x01, 0, 0, 0]);

        let total = u16::try_from(9 + body.len()).unwrap_or(u16::MAX);
        let [tl, th] = total.to_le_bytes();
        let mut out = vec![9, 2, tl, th, 2, 1, 0, 0x80, 50];
        out.extend(body);
        out
    }

    pub fn string_descriptor(&self, index: u8) -> Option<Vec<u8>> {
        let text = match index {
            0 => return Some(vec![4, 3, 0x09, 0x04]),
            1 => &self.manufacturer,
            2 => &self.product_name,
            3 => self.serial.as_ref()?,
            _ => return None,
        };
        let units: Vec<u16> = text.encode_utf16().take(126).collect();
        let mut out = vec![u8::try_from(2 + units.len() * 2).unwrap_or(254), 3];
        for u in units {
            out.extend(u.to_le_bytes());
        }
        Some(out)
    }
}

/// The device's state that control requests change.
#[derive(Debug, Clone)]
pub struct State {
    pub configured: bool,
    /// Alternate setting of the streaming interface: 1 streams.
    pub alt: u8,
    pub rate: u32,
}

/// The answer to a control request: data for IN requests (empty for OUT), or
/// a stall.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Data(Vec<u8>),
    Stall,
}

/// Answers one control request (`setup` as on the wire, `data` for OUT).
pub fn control(mic: &Mic, st: &mut State, setup: [u8; 8], data: &[u8]) -> Reply {
    let request_type = setup[0];
    let request = setup[1];
    let value = u16::from_le_bytes([setup[2], setup[3]]);
    let index = u16::from_le_bytes([setup[4], setup[5]]);
    let length = usize::from(u16::from_le_bytes([setup[6], setup[7]]));
    let clip = |mut v: Vec<u8>| {
        v.truncate(length);
        Reply::Data(v)
    };
    match (request_type, request) {
        // GET_DESCRIPTOR
        (0x80, 6) => {
            let [idx, kind] = value.to_le_bytes();
            match kind {
                1 => clip(mic.device_descriptor()),
                2 => clip(mic.config_descriptor()),
                3 => mic.string_descriptor(idx).map_or(Reply::Stall, clip),
                // No device qualifier (full speed only), no BOS.
                _ => Reply::Stall,
            }
        }
        // GET_STATUS (device, interface, endpoint)
        (0x80..=0x82, 0) => clip(vec![0, 0]),
        // GET_CONFIGURATION
        (0x80, 8) => clip(vec![u8::from(st.configured)]),
        // SET_CONFIGURATION
        (0x00, 9) => {
            st.configured = value == 1;
            Reply::Data(vec![])
        }
        // GET_INTERFACE
        (0x81, 10) => clip(vec![if index == 1 { st.alt } else { 0 }]),
        // SET_INTERFACE
        (0x01, 11) => {
            if index == 1 {
                st.alt = u8::try_from(value).unwrap_or(0);
            }
            Reply::Data(vec![])
        }
        // CLEAR_FEATURE / SET_FEATURE
        (0x00..=0x02, 1 | 3) => Reply::Data(vec![]),
        // UAC1 SET_CUR sampling frequency, on the endpoint.
        (0x22, 0x01) if value == 0x0100 && data.len() >= 3 => {
            let rate = u32::from_le_bytes([data[0], data[1], data[2], 0]);
            if mic.rates.contains(&rate) {
                st.rate = rate;
                Reply::Data(vec![])
            } else {
                Reply::Stall
            }
        }
        // UAC1 GET_CUR / GET_MIN / GET_MAX / GET_RES sampling frequency.
        (0xA2, 0x81..=0x84) if value == 0x0100 => clip(st.rate.to_le_bytes()[..3].to_vec()),
        _ => Reply::Stall,
    }
}

/// A tone generator that fills 1 ms packets, carrying the phase across them
/// and spreading rates that are not a multiple of 1000 (44.1 kHz: 44 or 45
/// frames a packet).
pub struct Tone {
    pub freq: f64,
    /// Peak amplitude, 0..1.
    pub amplitude: f64,
    phase: f64,
    frames_owed: u64,
}

impl Tone {
    pub fn new(freq: f64, amplitude: f64) -> Tone {
        Tone {
            freq,
            amplitude,
            phase: 0.0,
            frames_owed: 0,
        }
    }

    /// The bytes of one 1 ms packet (S16LE, every channel the same), at most `max`.
    pub fn packet(&mut self, rate: u32, channels: u8, max: usize) -> Vec<u8> {
        // Frames due after this millisecond, in thousandths of a frame.
        self.frames_owed += u64::from(rate);
        let frames = usize::try_from(self.frames_owed / 1000).unwrap_or(0);
        self.frames_owed %= 1000;
        let bytes_per_frame = usize::from(channels) * 2;
        let frames = frames.min(max / bytes_per_frame.max(1));
        let mut out = Vec::with_capacity(frames * bytes_per_frame);
        let step = self.freq / f64::from(rate) * std::f64::consts::TAU;
        for _ in 0..frames {
            let v = (self.phase.sin() * self.amplitude * 32767.0) as i16;
            self.phase = (self.phase + step) % std::f64::consts::TAU;
            for _ in 0..channels {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mic(serial: Option<&str>) -> Mic {
        Mic {
            vendor: 0x1209,
            product: 0x4d10,
            manufacturer: "hark".into(),
            product_name: "Test Mic".into(),
            serial: serial.map(Into::into),
            channels: 2,
            rates: vec![44_100, 48_000],
        }
    }

    fn setup(rt: u8, req: u8, value: u16, index: u16, len: u16) -> [u8; 8] {
        let [vl, vh] = value.to_le_bytes();
        let [il, ih] = index.to_le_bytes();
        let [ll, lh] = len.to_le_bytes();
        [rt, req, vl, vh, il, ih, ll, lh]
    }

    #[test]
    fn descriptors_are_consistent() {
        let m = mic(Some("A1"));
        let d = m.device_descriptor();
        assert_eq!(d.len(), 18);
        assert_eq!(d[16], 3);
        assert_eq!(mic(None).device_descriptor()[16], 0);
        let c = m.config_descriptor();
        assert_eq!(usize::from(u16::from_le_bytes([c[2], c[3]])), c.len());
        // Walk the descriptors: every length is right and they end exactly.
        let mut i = 0;
        let mut kinds = vec![];
        while i < c.len() {
            assert!(c[i] >= 2, "zero-length descriptor at {i}");
            kinds.push(c[i + 1]);
            i += usize::from(c[i]);
        }
        assert_eq!(i, c.len());
        assert_eq!(kinds.iter().filter(|k| **k == 4).count(), 3, "{kinds:?}");
        assert_eq!(m.max_packet(), 49 * 4);
        let s = m.string_descriptor(2).unwrap();
        assert_eq!(s[0] as usize, s.len());
        assert_eq!(mic(None).string_descriptor(3), None);
    }

    #[test]
    fn control_requests() {
        let m = mic(None);
        let mut st = State {
            configured: false,
            alt: 0,
            rate: 48_000,
        };
        let r = control(&m, &mut st, setup(0x80, 6, 0x0100, 0, 8), &[]);
        assert_eq!(r, Reply::Data(m.device_descriptor()[..8].to_vec()));
        assert_eq!(
            control(&m, &mut st, setup(0x80, 6, 0x0600, 0, 10), &[]),
            Reply::Stall
        );
        control(&m, &mut st, setup(0x00, 9, 1, 0, 0), &[]);
        assert!(st.configured);
        control(&m, &mut st, setup(0x01, 11, 1, 1, 0), &[]);
        assert_eq!(st.alt, 1);
        let r = control(
            &m,
            &mut st,
            setup(0x22, 1, 0x0100, 0x81, 3),
            &[0x44, 0xac, 0x00],
        );
        assert_eq!(r, Reply::Data(vec![]));
        assert_eq!(st.rate, 44_100);
        assert_eq!(
            control(&m, &mut st, setup(0xA2, 0x81, 0x0100, 0x81, 3), &[]),
            Reply::Data(vec![0x44, 0xac, 0x00])
        );
        // A rate the device does not have is refused.
        let r = control(
            &m,
            &mut st,
            setup(0x22, 1, 0x0100, 0x81, 3),
            &[0x80, 0xbb, 0x01],
        );
        assert_eq!(r, Reply::Stall);
    }

    #[test]
    fn packets_carry_the_rate_exactly() {
        let mut t = Tone::new(1000.0, 0.5);
        let total: usize = (0..1000).map(|_| t.packet(44_100, 2, 1023).len()).sum();
        assert_eq!(total, 44_100 * 4);
        let p = Tone::new(1000.0, 0.5).packet(48_000, 1, 1023);
        assert_eq!(p.len(), 96);
    }
}
