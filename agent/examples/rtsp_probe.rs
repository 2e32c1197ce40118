//! RTSP timing probe for the benchmark (scripts/bench.py). Not part of harkd.
//!
//! rtsp_probe first-packet URL COUNT     median connect-to-first-RTP-packet, ms
//! rtsp_probe hold URL SECONDS           one session reading RTP (a cheap client)
//! rtsp_probe churn URL COUNT            COUNT sessions of 0.5 s; prints failures
//! rtsp_probe until-play URL TIMEOUT_MS  retries until a PLAY succeeds; prints ms

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/rtsp_client.rs"]
mod rtsp_client;

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rtsp_probe first-packet|hold|churn|until-play URL N";
    let (mode, url, n) = match args.as_slice() {
        [_, m, u, n] => (m.as_str(), u.as_str(), n.parse::<u64>().expect(usage)),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    match mode {
        "first-packet" => {
            let mut times: Vec<f64> = (0..n)
                .map(|_| {
                    let (_, first) = rtsp_client::session(url, Duration::from_millis(100)).unwrap();
                    first.as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("{:.2}", times[times.len() / 2]);
        }
        "breakdown" => {
            for _ in 0..n {
                let t0 = Instant::now();
                let mut c = rtsp_client::Client::connect(url, Duration::from_secs(5)).unwrap();
                let u = c.url.clone();
                let t1 = t0.elapsed();
                let d = c.request("DESCRIBE", &u, &[]).unwrap();
                let t2 = t0.elapsed();
                assert_eq!(d.status, 200);
                drop(c);
                let mut c = rtsp_client::Client::connect(url, Duration::from_secs(5)).unwrap();
                c.play().unwrap();
                let t3 = t0.elapsed();
                let (_, first) = c
                    .read_rtp_until(Instant::now() + Duration::from_millis(50))
                    .unwrap();
                let t4 = first.unwrap() - t0;
                println!(
                    "connect {t1:?} describe {t2:?} | second connection play done {t3:?} first rtp {t4:?}"
                );
            }
        }
        "hold" => {
            let mut c = rtsp_client::Client::connect(url, Duration::from_secs(5)).unwrap();
            c.play().unwrap();
            let (packets, _) = c
                .read_rtp_until(Instant::now() + Duration::from_secs(n))
                .unwrap();
            let _ = c.teardown();
            println!("{packets}");
        }
        "churn" => {
            let failures = (0..n)
                .filter(|_| rtsp_client::session(url, Duration::from_millis(500)).is_err())
                .count();
            println!("{failures}");
        }
        "until-play" => {
            let t0 = Instant::now();
            let deadline = t0 + Duration::from_millis(n);
            loop {
                let ok = rtsp_client::Client::connect(url, Duration::from_secs(1))
                    .and_then(|mut c| c.play().map(|_| ()));
                if ok.is_ok() {
                    println!("{:.2}", t0.elapsed().as_secs_f64() * 1000.0);
                    return;
                }
                if Instant::now() > deadline {
                    eprintln!("no PLAY within {n} ms: {ok:?}", ok = ok.err());
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
