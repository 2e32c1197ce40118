//! A minimal RTSP/1.0 client, enough to drive sessions step by step and time
//! them: DESCRIBE, SETUP (RTP interleaved on the TCP connection, or on a UDP
//! port pair), PLAY, read RTP, TEARDOWN. Used by the churn test and by the
//! benchmark (examples/rtsp_probe.rs).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    cseq: u32,
    session: Option<String>,
    pub url: String,
    /// RTP and RTCP sockets once SETUP asked for UDP.
    udp: Option<(UdpSocket, UdpSocket)>,
}

/// How a session's RTP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved on the RTSP connection.
    Tcp,
    /// To a UDP port pair of the client's.
    Udp,
}

/// An even port for RTP and the next one for RTCP, on loopback.
fn udp_pair(timeout: Duration) -> Result<(UdpSocket, UdpSocket)> {
    for _ in 0..64 {
        let rtp = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
        let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            rtp.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            return Ok((rtp, rtcp));
        }
    }
    Err("no free UDP port pair".into())
}

pub type Result<T> = std::result::Result<T, String>;

impl Client {
    pub fn connect(url: &str, timeout: Duration) -> Result<Client> {
        let rest = url.strip_prefix("rtsp://").ok_or("not an rtsp:// URL")?;
        let hostport = rest.split('/').next().ok_or("no host")?;
        let addr: std::net::SocketAddr =
            hostport.parse().map_err(|e| format!("{hostport}: {e}"))?;
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
        Client::from_stream(s, url, timeout)
    }

    fn from_stream(s: TcpStream, url: &str, timeout: Duration) -> Result<Client> {
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        Ok(Client {
            writer: s,
            reader,
            cseq: 0,
            session: None,
            url: url.to_string(),
            udp: None,
        })
    }

    pub fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)]) -> Result<Response> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: hark-test\r\n",
            self.cseq
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.writer
            .write_all(req.as_bytes())
            .map_err(|e| format!("{method}: write: {e}"))?;
        self.read_response().map_err(|e| format!("{method}: {e}"))
    }

    /// Reads the next response, skipping interleaved RTP/RTCP frames before it.
    fn read_response(&mut self) -> Result<Response> {
        loop {
            let first = {
                let buf = self.reader.fill_buf().map_err(|e| e.to_string())?;
                if buf.is_empty() {
                    return Err("connection closed".into());
                }
                buf[0]
            };
            if first == b'$' {
                self.read_frame()?;
                continue;
            }
            break;
        }
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut headers = vec![];
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).map_err(|e| e.to_string())?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Reads one interleaved frame; returns (channel, payload length).
    pub fn read_frame(&mut self) -> Result<(u8, usize)> {
        self.read_frame_data().map(|(ch, data)| (ch, data.len()))
    }

    /// Reads one interleaved frame; returns (channel, payload).
    pub fn read_frame_data(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut hdr = [0u8; 4];
        self.reader
            .read_exact(&mut hdr)
            .map_err(|e| e.to_string())?;
        if hdr[0] != b'$' {
            return Err(format!(
                "expected an interleaved frame, got {:?}",
                hdr[0] as char
            ));
        }
        let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        let mut data = vec![0; len];
        self.reader
            .read_exact(&mut data)
            .map_err(|e| e.to_string())?;
        Ok((hdr[1], data))
    }

    /// DESCRIBE, SETUP (TCP interleaved) and PLAY; returns the DESCRIBE response.
    pub fn play(&mut self) -> Result<Response> {
        self.play_over(Transport::Tcp)
    }

    /// DESCRIBE, SETUP with `transport`, and PLAY; returns the DESCRIBE response.
    pub fn play_over(&mut self, transport: Transport) -> Result<Response> {
        let url = self.url.clone();
        let d = self.request("DESCRIBE", &url, &[("Accept", "application/sdp")])?;
        if d.status != 200 {
            return Err(format!("DESCRIBE answered {}", d.status));
        }
        let base = d.header("Content-Base").unwrap_or(&url).to_string();
        let control = d
            .body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a=control:"))
            .find(|c| *c != "*")
            .ok_or("no media control in SDP")?
            .to_string();
        let track = if control.starts_with("rtsp://") {
            control
        } else {
            format!("{}/{}", base.trim_end_matches('/'), control)
        };
        let spec = match transport {
            Transport::Tcp => "RTP/AVP/TCP;unicast;interleaved=0-1".to_string(),
            Transport::Udp => {
                let timeout = self.writer.read_timeout().ok().flatten();
                let (rtp, rtcp) = udp_pair(timeout.unwrap_or(Duration::from_secs(5)))?;
                let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
                self.udp = Some((rtp, rtcp));
                format!("RTP/AVP;unicast;client_port={port}-{}", port + 1)
            }
        };
        let s = self.request("SETUP", &track, &[("Transport", &spec)])?;
        if s.status != 200 {
            return Err(format!("SETUP answered {}", s.status));
        }
        let session = s.header("Session").ok_or("no Session header")?;
        self.session = Some(session.split(';').next().unwrap_or(session).to_string());
        let p = self.request("PLAY", &url, &[("Range", "npt=0-")])?;
        if p.status != 200 {
            return Err(format!("PLAY answered {}", p.status));
        }
        Ok(d)
    }

    /// As `connect`, with the socket's receive buffer set to `bytes` before it
    /// connects (so the window it offers stays that small; the kernel doubles
    /// it): a client that stops reading then pushes back on the server within a
    /// second or two instead of after megabytes.
    #[allow(unsafe_code)] // std cannot set SO_RCVBUF before connecting; a test helper
    pub fn connect_small_window(url: &str, bytes: i32, timeout: Duration) -> Result<Client> {
        use std::os::fd::FromRawFd;
        let rest = url.strip_prefix("rtsp://").ok_or("not an rtsp:// URL")?;
        let hostport = rest.split('/').next().ok_or("no host")?;
        let addr: std::net::SocketAddrV4 =
            hostport.parse().map_err(|e| format!("{hostport}: {e}"))?;
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a fresh socket; every pointer is to a live local of the size given.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is ours and open; from here the TcpStream owns and closes it.
        let s = unsafe { TcpStream::from_raw_fd(fd) };
        // SAFETY: as above.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("SO_RCVBUF: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: as above.
        let rc = unsafe {
            libc::connect(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("connect: {}", std::io::Error::last_os_error()));
        }
        Client::from_stream(s, url, timeout)
    }

    /// Reads RTP (channel 0) until `until`; returns the longest time between two
    /// packets (from the call to the first packet included) and the packet count.
    pub fn longest_rtp_gap(&mut self, until: Instant) -> Result<(Duration, usize)> {
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        let mut n = 0;
        while Instant::now() < until {
            let (ch, _) = self.read_frame()?;
            if ch == 0 {
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
                n += 1;
            }
        }
        Ok((longest, n))
    }

    /// Reads one RTP packet: from the UDP socket after a UDP SETUP, else the next
    /// interleaved frame on channel 0 (RTCP frames are skipped). Returns its length.
    pub fn read_rtp(&mut self) -> Result<usize> {
        self.read_rtp_packet().map(|p| p.len())
    }

    /// As `read_rtp`, returning the packet.
    pub fn read_rtp_packet(&mut self) -> Result<Vec<u8>> {
        if let Some((rtp, _)) = &self.udp {
            let mut buf = vec![0u8; 2048];
            let n = rtp.recv(&mut buf).map_err(|e| format!("udp: {e}"))?;
            buf.truncate(n);
            return Ok(buf);
        }
        loop {
            let (ch, data) = self.read_frame_data()?;
            if ch == 0 {
                return Ok(data);
            }
        }
    }

    /// As `read_rtp`, returning the packet's RTP sequence number.
    pub fn read_rtp_seq(&mut self) -> Result<u16> {
        let p = self.read_rtp_packet()?;
        if p.len() < 12 {
            return Err(format!("a {}-byte RTP packet", p.len()));
        }
        Ok(u16::from_be_bytes([p[2], p[3]]))
    }

    /// Reads RTP (channel 0) until `until`; returns (packets, time of the first).
    pub fn read_rtp_until(&mut self, until: Instant) -> Result<(usize, Option<Instant>)> {
        let mut n = 0;
        let mut first = None;
        while Instant::now() < until {
            let (ch, _) = self.read_frame()?;
            if ch == 0 {
                n += 1;
                first.get_or_insert_with(Instant::now);
            }
        }
        Ok((n, first))
    }

    pub fn teardown(&mut self) -> Result<u16> {
        let url = self.url.clone();
        Ok(self.request("TEARDOWN", &url, &[])?.status)
    }
}

/// One full session as BirdNET-Pi's ffmpeg makes it: DESCRIBE, SETUP, PLAY, read
/// for `read`, TEARDOWN. Returns (RTP packets, connect-to-first-packet time).
pub fn session(url: &str, read: Duration) -> Result<(usize, Duration)> {
    let t0 = Instant::now();
    let mut c = Client::connect(url, Duration::from_secs(5))?;
    c.play()?;
    let (n, first) = c.read_rtp_until(Instant::now() + read)?;
    let first = first.ok_or("no RTP packet")?;
    let status = c.teardown()?;
    if status != 200 {
        return Err(format!("TEARDOWN answered {status}"));
    }
    Ok((n, first - t0))
}

/// As `session`, but reads until `packets` RTP packets have arrived rather than
/// for a fixed time, so a loaded machine that delivers them late is not taken
/// for a stream that delivers too few. `within` bounds the reading (and each
/// request): pass a multiple of the packets' real-time duration, so a stream
/// that trickles still fails. Returns the connect-to-first-packet time.
pub fn session_packets(url: &str, packets: usize, within: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut c = Client::connect(url, within)?;
    c.play()?;
    let deadline = Instant::now() + within;
    let mut first = None;
    let mut n = 0;
    while n < packets {
        if Instant::now() > deadline {
            return Err(format!("only {n} of {packets} RTP packets in {within:?}"));
        }
        let (ch, _) = c
            .read_frame()
            .map_err(|e| format!("after {n} of {packets} RTP packets: {e}"))?;
        if ch == 0 {
            n += 1;
            first.get_or_insert_with(Instant::now);
        }
    }
    let status = c.teardown()?;
    if status != 200 {
        return Err(format!("TEARDOWN answered {status}"));
    }
    Ok(first.map_or(Duration::ZERO, |f| f - t0))
}

/// A bare probe: connect, DESCRIBE, disconnect. Returns the status code.
pub fn describe_probe(url: &str) -> Result<u16> {
    let mut c = Client::connect(url, Duration::from_secs(5))?;
    let u = c.url.clone();
    Ok(c.request("DESCRIBE", &u, &[("Accept", "application/sdp")])?
        .status)
}
